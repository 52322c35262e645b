//! The pipeline of [`super::pipeline`] on tokio: a multi-thread runtime
//! with two workers, bounded mpsc channels, a client task that sends on
//! the same schedule (yielding between due times, as a busy-spinning core
//! would spin) and a task that records answers.

use tokio::sync::mpsc;

use super::pipeline::Schedule;
use crate::clock;
use crate::metrics::LatencyHistogram;

/// Channel capacity, in requests.
const CAPACITY: usize = 1024;

/// Runs one schedule; `None` if the runtime could not be built.
pub(super) fn run(schedule: Schedule) -> Option<LatencyHistogram> {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            log::error!("tokio pipeline: {error}");
            return None;
        }
    };
    runtime.block_on(async move {
        let (request_tx, mut request_rx) = mpsc::channel::<u64>(CAPACITY);
        let (answer_tx, mut answer_rx) = mpsc::channel::<u64>(CAPACITY);
        let server = tokio::spawn(async move {
            while let Some(intended) = request_rx.recv().await {
                if answer_tx.send(intended).await.is_err() {
                    break;
                }
            }
        });
        let recorder = tokio::spawn(async move {
            let mut histogram = LatencyHistogram::new();
            while let Some(intended) = answer_rx.recv().await {
                if intended >= schedule.record_from_ns {
                    histogram.record(clock::now_ns().saturating_sub(intended));
                }
            }
            histogram
        });
        let client = tokio::spawn(async move {
            let mut next = schedule.start_ns;
            // As the corelane client: past the drain it stops sending.
            let give_up_ns = schedule.end_ns + super::pipeline::DRAIN_NS;
            while next < schedule.end_ns && clock::now_ns() <= give_up_ns {
                if next <= clock::now_ns() {
                    // A full channel makes the client wait: the request
                    // is still owed from its intended time.
                    if request_tx.send(next).await.is_err() {
                        break;
                    }
                    next += schedule.period_ns;
                } else {
                    tokio::task::yield_now().await;
                }
            }
        });
        let _ = client.await;
        let _ = server.await;
        recorder.await.ok()
    })
}
