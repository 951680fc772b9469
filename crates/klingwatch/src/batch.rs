//! Batch status queries: many ids, bounded concurrency, one result per id in input order.

use std::collections::HashMap;

use futures::stream::{FuturesUnordered, StreamExt};

use crate::client::Client;
use crate::error::Result;
use crate::task::{Task, TaskKind};

/// Default number of queries in flight for [`Client::get_many`].
pub const DEFAULT_CONCURRENCY: usize = 16;

impl Client {
    /// Reads many tasks at once: one `Ok(task)` or `Err(error)` per input id, in input
    /// order (a bad id never fails the batch). Duplicate ids are queried once; at most
    /// `concurrency` queries are in flight (0 means the default, 16).
    pub async fn get_many<S: AsRef<str>>(
        &self,
        kind: TaskKind,
        ids: &[S],
        concurrency: usize,
    ) -> Vec<Result<Task>> {
        self.get_many_with(kind, ids, concurrency, |r| r).await
    }

    /// Like [`Client::get_many`], with each result passed through `f` as soon as it arrives
    /// (while the rest of the batch is in flight), so a caller can convert or shrink results
    /// without holding every full [`Task`] until the end. Results come back in input order;
    /// a duplicate id is queried once and its converted result cloned.
    pub async fn get_many_with<S, T, F>(
        &self,
        kind: TaskKind,
        ids: &[S],
        concurrency: usize,
        mut f: F,
    ) -> Vec<T>
    where
        S: AsRef<str>,
        T: Clone,
        F: FnMut(Result<Task>) -> T,
    {
        let concurrency = if concurrency == 0 {
            DEFAULT_CONCURRENCY
        } else {
            concurrency
        };
        let mut first: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
        let mut unique: Vec<&str> = Vec::with_capacity(ids.len());
        let slot_of: Vec<usize> = ids
            .iter()
            .map(|id| {
                let id = id.as_ref();
                *first.entry(id).or_insert_with(|| {
                    unique.push(id);
                    unique.len() - 1
                })
            })
            .collect();
        let mut results: Vec<Option<T>> = (0..unique.len()).map(|_| None).collect();
        // A hand-fed FuturesUnordered rather than `stream::iter(..).map(..).buffer_unordered`:
        // same bounded concurrency, and the future stays provably `Send` for the bindings
        // (the closure form trips rustc's higher-ranked lifetime inference).
        let mut in_flight = FuturesUnordered::new();
        let mut next = 0;
        loop {
            while in_flight.len() < concurrency && next < unique.len() {
                let (slot, id) = (next, unique[next]);
                in_flight.push(async move { (slot, self.get_task(kind, id).await) });
                next += 1;
            }
            match in_flight.next().await {
                Some((slot, result)) => results[slot] = Some(f(result)),
                None => break,
            }
        }
        drop(in_flight);
        // Each unique result moves to its first position; later duplicates get clones.
        let mut out = Vec::with_capacity(ids.len());
        let mut used = vec![false; unique.len()];
        let mut last_use = vec![0usize; unique.len()];
        for (pos, slot) in slot_of.iter().enumerate() {
            last_use[*slot] = pos;
        }
        for (pos, slot) in slot_of.into_iter().enumerate() {
            let r = if last_use[slot] == pos {
                results[slot].take().expect("each slot answered once")
            } else {
                results[slot].clone().expect("each slot answered once")
            };
            used[slot] = true;
            out.push(r);
        }
        out
    }
}
