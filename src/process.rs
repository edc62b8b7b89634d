//! The `process_*` metrics every Prometheus exporter serves (CPU, memory, descriptors,
//! start time), read from `/proc/self` at each scrape, with the names and meaning of the Go
//! client's process collector so existing dashboards and alerts work unchanged.
//!
//! Owns only reading and encoding them; `metrics` declares the series (names, help,
//! types) and registers the collector on `/metrics` with them (this module imports nothing
//! from the crate: `metrics` is above it).
//! On a system without `/proc` (not Linux) the collector writes nothing, and a failed read
//! leaves out that scrape's process series rather than failing the scrape.

use prometheus_client::registry::Registry;

/// One figure of a [`Reading`]; `metrics` declares the series each is served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    CpuSeconds,
    OpenFds,
    MaxFds,
    VirtualMemoryBytes,
    ResidentMemoryBytes,
    StartTimeSeconds,
}

impl Figure {
    pub const ALL: &'static [Figure] = &[
        Figure::CpuSeconds,
        Figure::OpenFds,
        Figure::MaxFds,
        Figure::VirtualMemoryBytes,
        Figure::ResidentMemoryBytes,
        Figure::StartTimeSeconds,
    ];
}

/// A series the collector writes: a figure under the name (as prometheus-client registers
/// it: a counter without `_total`), help and type its declaration in `metrics` gives.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub name: &'static str,
    pub help: &'static str,
    pub figure: Figure,
    pub counter: bool,
}

/// Registers the process collector on the exporter's own registry, writing `series` in
/// their order; `metrics` declares them, so this module names no metric and imports
/// nothing from the crate.
pub fn register(registry: &mut Registry, series: Vec<Series>) {
    registry.register_collector(Box::new(ProcessCollector { series }));
}

#[derive(Debug)]
struct ProcessCollector {
    series: Vec<Series>,
}

/// One reading of the process' figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub virtual_memory_bytes: u64,
    pub resident_memory_bytes: u64,
    pub start_time_seconds: f64,
}

/// Reads `/proc/self`; `None` when it cannot be read.
impl Reading {
    /// A figure's value; `None` for the descriptor limit when it is unlimited: there is no
    /// number to show, and the Go client leaves it out too.
    pub fn get(&self, figure: Figure) -> Option<f64> {
        Some(match figure {
            Figure::CpuSeconds => self.cpu_seconds,
            Figure::OpenFds => self.open_fds as f64,
            Figure::MaxFds => self.max_fds? as f64,
            Figure::VirtualMemoryBytes => self.virtual_memory_bytes as f64,
            Figure::ResidentMemoryBytes => self.resident_memory_bytes as f64,
            Figure::StartTimeSeconds => self.start_time_seconds,
        })
    }
}

#[cfg(target_os = "linux")]
pub fn read() -> Option<Reading> {
    use procfs::WithCurrentSystemInfo;
    use procfs::process::Process;

    let me = Process::myself().ok()?;
    let stat = me.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let boot = procfs::boot_time_secs().ok()? as f64;
    let max_fds = max_open_files_of(&me);
    Some(Reading {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        open_fds: me.fd_count().ok()? as u64,
        max_fds,
        virtual_memory_bytes: stat.vsize,
        resident_memory_bytes: stat.rss_bytes().get(),
        start_time_seconds: boot + stat.starttime as f64 / ticks,
    })
}

#[cfg(not(target_os = "linux"))]
pub fn read() -> Option<Reading> {
    None
}

/// The soft `RLIMIT_NOFILE` ("Max open files" in /proc/self/limits, which needs no unsafe
/// code and no system call a systemd filter could deny); `None` when unknown or unlimited.
/// `process_max_fds` and the server's connection cap both read it here.
#[cfg(target_os = "linux")]
pub fn max_open_files() -> Option<u64> {
    max_open_files_of(&procfs::process::Process::myself().ok()?)
}

#[cfg(not(target_os = "linux"))]
pub fn max_open_files() -> Option<u64> {
    None
}

#[cfg(target_os = "linux")]
fn max_open_files_of(me: &procfs::process::Process) -> Option<u64> {
    use procfs::process::LimitValue;
    match me.limits().ok()?.max_open_files.soft_limit {
        LimitValue::Value(v) => Some(v),
        LimitValue::Unlimited => None,
    }
}

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;

        let Some(r) = read() else {
            return Ok(());
        };
        // prometheus-client appends `_total` to counters itself.
        for s in &self.series {
            let Some(value) = r.get(s.figure) else {
                continue;
            };
            if s.counter {
                let c = ConstCounter::new(value);
                c.encode(encoder.encode_descriptor(s.name, s.help, None, c.metric_type())?)?;
            } else {
                let g = ConstGauge::new(value);
                g.encode(encoder.encode_descriptor(s.name, s.help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn reading_is_plausible() {
        let r = super::read().expect("/proc/self is readable in tests");
        assert!(r.resident_memory_bytes > 1 << 20, "{r:?}");
        assert!(r.virtual_memory_bytes >= r.resident_memory_bytes, "{r:?}");
        assert!(r.open_fds >= 3, "{r:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            r.start_time_seconds <= now + 1.0 && r.start_time_seconds > now - 86400.0 * 365.0,
            "{r:?}"
        );
    }
}
