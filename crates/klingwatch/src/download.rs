//! Downloading results to files before the server deletes them (30 days).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

use crate::client::{transport_error, Client};
use crate::error::{Error, ErrorKind, Result};
use crate::retry::{should_retry, Idempotency};
use crate::task::{Task, TaskStatus};

/// Time allowed for one file download.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

fn extension(url: &str, default: &str) -> String {
    let path = url::Url::parse(url)
        .map(|u| u.path().to_owned())
        .unwrap_or_default();
    let ext = path
        .rsplit('/')
        .next()
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    match ext {
        Some(e)
            if !e.is_empty() && e.len() <= 5 && e.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            e
        }
        _ => default.to_owned(),
    }
}

impl Client {
    /// Saves every image and video of a succeeded task into `dir` (created if needed) as
    /// `{task_id}_{index}.{ext}` (videos: `{task_id}_video_{n}.{ext}`). Each file is
    /// streamed to a temporary name and renamed when complete, so a file that exists is
    /// whole. No credentials are sent to the result hosts. Returns the paths in order.
    pub async fn download_results(
        &self,
        task: &Task,
        dir: impl AsRef<Path>,
    ) -> Result<Vec<PathBuf>> {
        match &task.status {
            TaskStatus::Succeed => {}
            TaskStatus::Failed => return task.clone().raise_for_failure().map(|_| Vec::new()),
            other => {
                return Err(Error::invalid(format!(
                    "task {} has no results yet (status {other})",
                    task.id
                ))
                .with_task_id(task.id.clone()))
            }
        }
        crate::task::validate_task_id(&task.id)?;
        let dir = dir.as_ref().to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::invalid(format!("cannot create {}: {e}", dir.display())))?;
        let mut jobs: Vec<(String, PathBuf)> = Vec::new();
        for img in &task.images {
            jobs.push((
                img.url.clone(),
                dir.join(format!(
                    "{}_{}.{}",
                    task.id,
                    img.index,
                    extension(&img.url, "png")
                )),
            ));
        }
        for (n, v) in task.videos.iter().enumerate() {
            jobs.push((
                v.url.clone(),
                dir.join(format!(
                    "{}_video_{}.{}",
                    task.id,
                    n,
                    extension(&v.url, "mp4")
                )),
            ));
        }
        stream::iter(jobs)
            .map(|(url, path)| async move { self.download_one(&url, &path).await.map(|_| path) })
            .buffered(4)
            .try_collect()
            .await
            .map_err(|e: Error| e.with_task_id(task.id.clone()))
    }

    async fn download_one(&self, url: &str, path: &Path) -> Result<()> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.download_attempt(url, path).await {
                Ok(()) => return Ok(()),
                Err(e)
                    if attempt <= self.inner.retry.max_retries
                        && should_retry(&e, Idempotency::Read) =>
                {
                    tokio::time::sleep(self.inner.retry.delay(attempt, &e)).await;
                }
                Err(e) => return Err(e.with_attempts(attempt)),
            }
        }
    }

    async fn download_attempt(&self, url: &str, path: &Path) -> Result<()> {
        let resp = self
            .inner
            .http
            .get(url)
            .timeout(DOWNLOAD_TIMEOUT)
            .send()
            .await
            .map_err(transport_error)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let (kind, retryable) = crate::error::status_fallback(status);
            return Err(
                Error::new(kind, format!("download failed with HTTP {status}"))
                    .with_http_status(status)
                    .with_retryable(retryable),
            );
        }
        let tmp = path.with_extension(format!("part-{:08x}", rand::random::<u32>()));
        let io_err = |e: std::io::Error| {
            Error::new(
                ErrorKind::InvalidRequest,
                format!("cannot write {}: {e}", path.display()),
            )
        };
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await.map_err(io_err)?;
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(transport_error)?;
                file.write_all(&chunk).await.map_err(io_err)?;
            }
            file.flush().await.map_err(io_err)?;
            file.sync_all().await.map_err(io_err)?;
            drop(file);
            tokio::fs::rename(&tmp, path).await.map_err(io_err)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }
}
