//! Timing recorded dispatches: by the device's timestamp queries where it has them, else by
//! the host's wall clock (used by `activeshift bench` and by [`tune`](super::tune::tune)).
//!
//! Everything here is asynchronous and works on every target: on native the device is polled
//! until the work is done, in the browser the futures resolve when WebGPU says so (nothing
//! blocks the page's thread). The wall clock is `web_time`'s `Instant` (std's on native,
//! `performance.now()` in the browser).

use super::GpuContext;
use super::kernels::Dispatch;
use crate::error::{Error, Result};
use web_time::Instant;

/// A query set for the two timestamps around one compute pass, and its readback buffers.
struct Timestamps {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    period_ns: f64,
}

/// Times one run of a [`Dispatch`] at a time on one context: from the beginning to the end of
/// its compute pass by the device's timestamp queries where the device was opened with
/// `TIMESTAMP_QUERY` ([`GpuContext::new`] takes it where the adapter has it), else by the
/// host's wall clock around its submission and completion (which adds the submission's cost,
/// and in a browser the turn of the event loop that reports the completion).
pub struct DispatchTimer {
    ctx: GpuContext,
    timestamps: Option<Timestamps>,
}

impl DispatchTimer {
    /// A timer for `ctx`.
    pub fn new(ctx: &GpuContext) -> Self {
        let device = ctx.device();
        let timestamps = device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| Timestamps {
                set: device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("activeshift timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                }),
                resolve: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("activeshift timestamps resolve"),
                    size: 16,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                read: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("activeshift timestamps read"),
                    size: 16,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                period_ns: f64::from(ctx.queue().get_timestamp_period()),
            });
        Self {
            ctx: ctx.clone(),
            timestamps,
        }
    }

    /// Whether times come from the device's timestamp queries (else the wall clock).
    pub fn uses_timestamps(&self) -> bool {
        self.timestamps.is_some()
    }

    /// What the times come from, in words (`the device's timestamp queries`, `wall clock`).
    pub fn clock(&self) -> &'static str {
        if self.uses_timestamps() {
            "the device's timestamp queries"
        } else {
            "wall clock"
        }
    }

    /// Submit `dispatch` and wait for it; no timing.
    ///
    /// # Errors
    /// A device error while running it.
    pub async fn run(&self, dispatch: &Dispatch) -> Result<()> {
        self.ctx.submit(|enc| {
            dispatch.record(enc);
            Ok(())
        })?;
        self.done().await
    }

    /// Resolves once the work submitted so far has finished.
    async fn done(&self) -> Result<()> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.ctx.queue().on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        self.ctx
            .device()
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("waiting for the GPU: {e}")))?;
        rx.await
            .map_err(|_| Error::Device("the completion callback was dropped".into()))?;
        self.ctx.check_device()
    }

    /// Run `dispatch` once (one compute pass) and return how long it took, in milliseconds.
    ///
    /// # Errors
    /// A device error while running it or reading the timestamps back.
    pub async fn time(&self, dispatch: &Dispatch) -> Result<f64> {
        let Some(ts) = &self.timestamps else {
            let start = Instant::now();
            self.run(dispatch).await?;
            return Ok(start.elapsed().as_secs_f64() * 1e3);
        };
        self.ctx.submit(|enc| {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("activeshift timed"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &ts.set,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                }),
            });
            dispatch.record_in(&mut pass);
            drop(pass);
            enc.resolve_query_set(&ts.set, 0..2, &ts.resolve, 0);
            enc.copy_buffer_to_buffer(&ts.resolve, 0, &ts.read, 0, 16);
            Ok(())
        })?;
        let bytes = super::tensor::map_read(&self.ctx, &ts.read).await?;
        let v: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        Ok(v[1].saturating_sub(v[0]) as f64 * ts.period_ns / 1e6)
    }

    /// [`DispatchTimer::time`], blocking the calling thread (native only).
    ///
    /// # Errors
    /// As [`DispatchTimer::time`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time_blocking(&self, dispatch: &Dispatch) -> Result<f64> {
        pollster::block_on(self.time(dispatch))
    }
}
