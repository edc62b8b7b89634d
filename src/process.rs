//! The `process_*` metrics every Prometheus exporter serves (CPU, memory, descriptors,
//! start time), read from `/proc/self` at each scrape, with the names and meaning of the Go
//! client's process collector so existing dashboards and alerts work unchanged.
//!
//! Owns only reading and encoding them; `metrics` registers the collector on `/metrics`
//! and hands it the help texts (it imports nothing from the crate: `metrics` is above it).
//! On a system without `/proc` (not Linux) the collector writes nothing, and a failed read
//! leaves out that scrape's process series rather than failing the scrape.

use prometheus_client::registry::Registry;

/// Registers the process collector on the exporter's own registry; `help` gives a
/// metric's help text by the name prometheus-client registers it under (a counter without
/// `_total`), so the declaration stays in `metrics` and this module imports nothing of it.
pub fn register(registry: &mut Registry, help: fn(&str) -> &'static str) {
    registry.register_collector(Box::new(ProcessCollector { help }));
}

#[derive(Debug)]
struct ProcessCollector {
    help: fn(&str) -> &'static str,
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
        let help = self.help;
        // prometheus-client appends `_total` to counters itself.
        let cpu = ConstCounter::new(r.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            help("process_cpu_seconds"),
            None,
            cpu.metric_type(),
        )?)?;
        let mut gauges = vec![
            ("process_open_fds", r.open_fds as f64),
            (
                "process_virtual_memory_bytes",
                r.virtual_memory_bytes as f64,
            ),
            (
                "process_resident_memory_bytes",
                r.resident_memory_bytes as f64,
            ),
            ("process_start_time_seconds", r.start_time_seconds),
        ];
        // An unlimited soft limit has no number to show; the Go client leaves it out too.
        if let Some(max) = r.max_fds {
            gauges.insert(1, ("process_max_fds", max as f64));
        }
        for (name, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help(name), None, g.metric_type())?)?;
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
