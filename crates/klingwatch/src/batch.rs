//! Batch status queries: many ids, bounded concurrency, one result per id in input order.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{Stream, StreamExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::task::AbortOnDropHandle;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::task::{Task, TaskKind};

/// Default number of queries in flight for [`Client::get_many`].
pub const DEFAULT_CONCURRENCY: usize = 16;

impl Client {
    /// Reads many tasks at once: one `Ok(task)` or `Err(error)` per input id, in input
    /// order (a bad id never fails the batch). Duplicate ids are queried once; at most
    /// `concurrency` queries are in flight (0 means the default, 16).
    ///
    /// The queries share one HTTP/2 connection over TLS, whose task does most of the work:
    /// on a machine with few cores, a current-thread runtime
    /// (`#[tokio::main(flavor = "current_thread")]`) answers a large batch fastest, since no
    /// answer crosses threads (docs/benchmarks.md).
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
        let mut out: Vec<Option<T>> = (0..ids.len()).map(|_| None).collect();
        let mut stream = std::pin::pin!(self.get_many_stream(kind, ids, concurrency));
        while let Some(BatchItem { positions, result }) = stream.next().await {
            let converted = f(result);
            if let Some((last, rest)) = positions.split_last() {
                for p in rest {
                    out[*p] = Some(converted.clone());
                }
                out[*last] = Some(converted);
            }
        }
        out.into_iter()
            .map(|r| r.expect("every position is answered"))
            .collect()
    }

    /// The queries of [`Client::get_many`] as a stream in arrival order: one [`BatchItem`]
    /// per unique id, with every input position that id holds. At most `concurrency`
    /// queries are in flight (0 means the default, 16); dropping the stream cancels the rest.
    ///
    /// This is what lets a binding turn results into its language's objects on its own
    /// thread while the rest of the batch is still in flight.
    pub fn get_many_stream<S: AsRef<str>>(
        &self,
        kind: TaskKind,
        ids: &[S],
        concurrency: usize,
    ) -> impl Stream<Item = BatchItem> + Send + 'static {
        let concurrency = if concurrency == 0 {
            DEFAULT_CONCURRENCY
        } else {
            concurrency
        };
        // The unique ids one after the other in one shared text (allocated per batch, not per
        // id), each with every position it holds in the input.
        let mut slot_of: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
        let mut text = String::with_capacity(ids.iter().map(|id| id.as_ref().len()).sum());
        let mut unique: Vec<(Range<usize>, Vec<usize>)> = Vec::with_capacity(ids.len());
        for (pos, id) in ids.iter().enumerate() {
            let id = id.as_ref();
            match slot_of.get(id) {
                Some(&slot) => unique[slot].1.push(pos),
                None => {
                    slot_of.insert(id, unique.len());
                    let start = text.len();
                    text.push_str(id);
                    unique.push((start..text.len(), vec![pos]));
                }
            }
        }
        let text: Arc<str> = text.into();
        let client = self.clone();
        futures::stream::iter(unique)
            .map(move |(span, positions)| {
                let client = client.clone();
                let text = text.clone();
                async move {
                    let result = client.get_task(kind, &text[span]).await;
                    BatchItem { positions, result }
                }
            })
            .buffer_unordered(concurrency)
    }

    /// [`Client::get_many_stream`] running on a task of its own, in chunks: each item holds
    /// every answer that arrived since the previous item (at least one; answers gather for
    /// up to a millisecond). The queries never wait for the consumer, so a binding can turn
    /// one chunk into its language's objects on its own thread while the batch keeps its
    /// concurrency. An item is an error only if the batch's task panicked. Dropping the
    /// stream aborts the queries still in flight. Must be polled on a tokio runtime (the
    /// batch is spawned onto it on the first poll).
    pub fn get_many_chunks<S: AsRef<str>>(
        &self,
        kind: TaskKind,
        ids: &[S],
        concurrency: usize,
    ) -> impl Stream<Item = Result<Vec<BatchItem>>> + Send + 'static {
        let batch = self.get_many_stream(kind, ids, concurrency);
        let state: ChunkState<_> = (Some(batch), None);
        futures::stream::unfold(state, |(start, running)| async move {
            let (mut rx, mut work) = match (start, running) {
                (Some(batch), _) => {
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    let work = tokio::spawn(async move {
                        let mut batch = std::pin::pin!(batch);
                        while let Some(item) = batch.next().await {
                            if tx.send(item).is_err() {
                                break;
                            }
                        }
                    });
                    (rx, AbortOnDropHandle::new(work))
                }
                (None, Some(running)) => running,
                (None, None) => return None,
            };
            match rx.recv().await {
                Some(first) => {
                    tokio::time::sleep(CHUNK_GATHER).await;
                    let mut chunk = vec![first];
                    while chunk.len() < MAX_CHUNK {
                        match rx.try_recv() {
                            Ok(item) => chunk.push(item),
                            Err(_) => break,
                        }
                    }
                    Some((Ok(chunk), (None, Some((rx, work)))))
                }
                // The batch is over; had its task panicked, some ids would be unanswered.
                None => match (&mut work).await {
                    Ok(()) => None,
                    Err(_) => Some((Err(Error::from_panic()), (None, None))),
                },
            }
        })
    }
}

/// How long the answers of one chunk gather: a consumer woken per millisecond rather than
/// per answer.
const CHUNK_GATHER: Duration = Duration::from_millis(1);
/// Most answers in one chunk.
const MAX_CHUNK: usize = 4096;

type ChunkState<B> = (
    Option<B>,
    Option<(UnboundedReceiver<BatchItem>, AbortOnDropHandle<()>)>,
);

/// One answer of [`Client::get_many_stream`].
#[derive(Debug)]
pub struct BatchItem {
    /// Every position of the id in the input (more than one when it was given twice).
    pub positions: Vec<usize>,
    /// The task, or the error of that id.
    pub result: Result<Task>,
}
