//! Benchmark driver (not a test), run by `scripts/bench`. Every subcommand measures one thing,
//! appends `run<TAB>key<TAB>value` lines to `--out`, and `report` turns those lines into the
//! tables of docs/benchmarks.md (median and min–max over runs; ratios are computed inside one
//! run, then summarised).
//!
//! - `overhead`: library level, one current-thread runtime. The `registry` and `pull` checks
//!   (`checks::run_check`, and `App::execute` + `App::record`, the whole interval-mode cost of a
//!   check) against the same request made by `curl` (one process, keep-alive) and by a bare
//!   `reqwest::Client`, interleaved in rounds. Median latency and CPU time per request.
//! - `compare`: end to end. `/probe` of the release exporter vs `/probe` of
//!   prometheus-blackbox-exporter for the same two requests, interleaved: latency, CPU per probe
//!   of each process (from /proc/<pid>), the registry's CPU per probe, RSS.
//! - `scale`: interval mode against N registries, on the bench responder (`--stats` its
//!   counters) or on a real Distribution (no `--stats`): check-runs/s from
//!   `oci_registry_check_runs_total` deltas vs the expected rate, CPU of the exporter and of
//!   the server (`--responder-pid`), RSS and peak RSS, `/metrics` latency and size, last-run
//!   ages, and from the responder's counters new TCP connections and token requests per
//!   check-run (from the exporter's open sockets against Distribution).
//! - `render`: `Store::put` and `Metrics::encode_chunks` for many registry × check pairs.
//! - `page`: the `/` status page (`status_page::render`) for many registries, a tenth of
//!   them failing, capped and with `?all=true`: time and size.
//! - `loop`: one case in a loop with no measurement, for callgrind/perf.
//! - `report`: prints the tables.
//!
//! All traffic goes to 127.0.0.1; every loop is bounded in count and time.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use oci_registry_exporter::App;
use oci_registry_exporter::app::TargetRuntime;
use oci_registry_exporter::checks::{
    self, AuthMethod, Capability, CapabilityStatus, CheckKind, CheckResult, Reason, Status,
};
use oci_registry_exporter::config::Config;
use oci_registry_exporter::metrics::{Format, Metrics};
use oci_registry_exporter::store::Store;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

// ---------------------------------------------------------------------------------------------
// Arguments and output

struct Args(HashMap<String, String>);

impl Args {
    fn parse(list: &[String]) -> Args {
        let mut map = HashMap::new();
        let mut it = list.iter();
        while let Some(k) = it.next() {
            let key = k
                .strip_prefix("--")
                .unwrap_or_else(|| panic!("expected --key, got {k}"));
            let v = it.next().unwrap_or_else(|| panic!("--{key} needs a value"));
            map.insert(key.to_string(), v.clone());
        }
        Args(map)
    }
    fn str(&self, k: &str) -> String {
        self.0
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("--{k} is required"))
    }
    fn opt(&self, k: &str) -> Option<String> {
        self.0.get(k).cloned()
    }
    fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> T {
        match self.0.get(k) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| panic!("--{k} {v}: not a number")),
        }
    }
}

/// Appends `run<TAB>key<TAB>value` lines to the results file and echoes them to stderr.
struct Out {
    run: String,
    file: std::fs::File,
}

impl Out {
    fn new(a: &Args) -> Out {
        let path = a.str("out");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        Out {
            run: a.opt("run").unwrap_or_else(|| "1".into()),
            file,
        }
    }
    fn put(&mut self, key: &str, value: f64) {
        if !value.is_finite() {
            return;
        }
        writeln!(self.file, "{}\t{}\t{}", self.run, key, value).expect("write results");
        eprintln!("  {key} = {}", fmt_num(value));
    }
}

// ---------------------------------------------------------------------------------------------
// Process accounting

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// CPU time of a process: (sum of its live threads' schedstat run time, utime+stime of
/// /proc/<pid>/stat), both in ns. The first is precise; the second counts exited threads too.
#[derive(Clone, Copy, Debug)]
struct Cpu {
    sched_ns: u64,
    stat_ns: u64,
}

fn proc_cpu(pid: u32) -> Cpu {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e} (did the process die?)"));
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Field 14 (utime) and 15 (stime) of proc(5); `after` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let stat_ns = (ticks as f64 * 1e9 / clk_tck()) as u64;
    let mut sched_ns = 0;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                sched_ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Cpu { sched_ns, stat_ns }
}

/// CPU ns spent between two samples. The precise schedstat delta unless threads exited in
/// between (then the tick-based delta is larger by more than its resolution, and used).
fn cpu_delta(a: Cpu, b: Cpu) -> f64 {
    let sched = b.sched_ns.saturating_sub(a.sched_ns) as f64;
    let stat = b.stat_ns.saturating_sub(a.stat_ns) as f64;
    let tick = 1e9 / clk_tck();
    if stat > sched * 1.1 + 2.0 * tick {
        stat
    } else {
        sched
    }
}

/// (VmRSS, VmHWM) in KiB.
fn rss_kib(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

fn self_cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

fn children_cpu_ns() -> f64 {
    // SAFETY: an all-zero rusage is valid, and it is a valid out-pointer.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e9 + t.tv_usec as f64 * 1e3;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// Statistics

fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let idx = ((s.len() - 1) as f64 * p).round() as usize;
    s[idx]
}

fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 0.1 {
        format!("{v:.2}")
    } else if v == 0.0 {
        "0".into()
    } else {
        format!("{v:.3}")
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the subcommands

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(8)
        .build()
        .expect("reqwest client")
}

/// Loads an exporter config from TOML text (written to a temp file, as `--config` reads it).
fn load_config(text: &str) -> Config {
    let dir = std::env::temp_dir().join(format!("bench-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(Some(&path)).unwrap_or_else(|e| panic!("config rejected: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    config
}

fn one_registry_config(url: &str, repo: &str, tag: &str) -> Config {
    load_config(&format!(
        "max_concurrency = 16\n[[registries]]\nname = \"bench\"\nurl = \"{url}\"\n\
         test_repository = \"{repo}\"\ntest_tag = \"{tag}\"\nchecks = [\"registry\", \"pull\"]\n\
         interval = \"1h\"\ntimeout = \"10s\"\n"
    ))
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// overhead: library-level cost of a check vs the raw request

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Req {
    V2,
    Manifest,
}

impl Req {
    fn name(self) -> &'static str {
        match self {
            Req::V2 => "v2",
            Req::Manifest => "manifest",
        }
    }
    fn kind(self) -> CheckKind {
        match self {
            Req::V2 => CheckKind::Registry,
            Req::Manifest => CheckKind::Pull,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    Curl,
    Reqwest,
    Check,
    CheckRecord,
}

impl Client {
    const ALL: [Client; 4] = [
        Client::Curl,
        Client::Reqwest,
        Client::Check,
        Client::CheckRecord,
    ];
    fn name(self) -> &'static str {
        match self {
            Client::Curl => "curl",
            Client::Reqwest => "reqwest",
            Client::Check => "check",
            Client::CheckRecord => "check_record",
        }
    }
}

struct Bench {
    base: String,
    repo: String,
    tag: String,
    app: App,
    /// The one registry's runtime (target, client, permits).
    rt: Arc<TargetRuntime>,
    raw: reqwest::Client,
    tmp: std::path::PathBuf,
}

impl Bench {
    fn url(&self, req: Req) -> String {
        match req {
            Req::V2 => format!("{}/v2/", self.base),
            Req::Manifest => format!("{}/v2/{}/manifests/{}", self.base, self.repo, self.tag),
        }
    }

    async fn raw_once(&self, req: Req) -> u16 {
        let url = self.url(req);
        let resp = match req {
            Req::V2 => self.raw.get(url).send().await,
            Req::Manifest => {
                self.raw
                    .head(url)
                    .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT)
                    .send()
                    .await
            }
        }
        .expect("raw request");
        let status = resp.status().as_u16();
        let _ = resp.bytes().await.expect("raw body");
        status
    }

    fn new(base: String, repo: String, tag: String, tmp: std::path::PathBuf) -> Bench {
        let app = App::new(one_registry_config(&base, &repo, &tag)).expect("app");
        let rt = app.current().targets[0].clone();
        Bench {
            app,
            rt,
            raw: reqwest::Client::builder().no_proxy().build().unwrap(),
            base,
            repo,
            tag,
            tmp,
        }
    }

    async fn check_once(&self, req: Req) -> CheckResult {
        checks::run_check(req.kind(), &self.rt.target, &self.rt.client).await
    }

    async fn check_record_once(&self, req: Req) {
        let results = self.app.execute(&self.rt, Some(&[req.kind()])).await;
        self.app.record(&self.rt, results);
    }

    /// `n` requests in one curl process on one keep-alive connection. Returns the latencies
    /// (without the first request, which connects) and the process' CPU ns.
    fn curl(&self, req: Req, n: usize) -> (Vec<f64>, f64) {
        let cfg = self.tmp.join("curl.cfg");
        let mut text = String::from("silent\nnoproxy = \"*\"\nwrite-out = \"%{time_total}\\n\"\n");
        if req == Req::Manifest {
            text.push_str("head\n");
            let _ = writeln!(text, "header = \"Accept: {MANIFEST_ACCEPT}\"");
        }
        let url = self.url(req);
        for _ in 0..n {
            let _ = writeln!(text, "url = \"{url}\"\noutput = \"/dev/null\"");
        }
        std::fs::write(&cfg, text).unwrap();
        let before = children_cpu_ns();
        let out = Command::new("curl")
            .arg("-K")
            .arg(&cfg)
            .stdin(Stdio::null())
            .output()
            .expect("run curl");
        let cpu = children_cpu_ns() - before;
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lat: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| l.trim().parse::<f64>().ok())
            .map(|s| s * 1e6)
            .collect();
        (lat, cpu)
    }

    /// Runs `n` iterations of one client; returns latencies (µs) and CPU ns per iteration.
    async fn block(
        &self,
        client: Client,
        req: Req,
        n: usize,
        curl_start_ns: f64,
    ) -> (Vec<f64>, f64) {
        if client == Client::Curl {
            let (lat, cpu) = self.curl(req, n);
            // The process' start-up and first connection, measured alone, are not per request.
            return (lat, ((cpu - curl_start_ns) / (n - 1) as f64).max(0.0));
        }
        let mut lat = Vec::with_capacity(n);
        let cpu0 = self_cpu_ns();
        for _ in 0..n {
            let t = Instant::now();
            match client {
                Client::Reqwest => {
                    std::hint::black_box(self.raw_once(req).await);
                }
                Client::Check => {
                    std::hint::black_box(self.check_once(req).await);
                }
                Client::CheckRecord => self.check_record_once(req).await,
                Client::Curl => unreachable!(),
            }
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        (lat, (self_cpu_ns() - cpu0) / n as f64)
    }
}

fn overhead(a: &Args) {
    let base = a.str("url").trim_end_matches('/').to_string();
    let label = a.str("label");
    let n: usize = a.num("n", 2000);
    let rounds: usize = a.num("rounds", 5);
    let per = (n / rounds).max(10);
    let repo = a.opt("repo").unwrap_or_else(|| "library/alpine".into());
    let tag = a.opt("tag").unwrap_or_else(|| "latest".into());
    let mut out = Out::new(a);
    let tmp = std::env::temp_dir().join(format!("bench-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let rt = current_thread();
    rt.block_on(async {
        let bench = Bench::new(base, repo, tag, tmp.clone());
        // Sanity: both checks pass and the raw requests answer 200, before anything is timed.
        for req in [Req::V2, Req::Manifest] {
            let r = bench.check_once(req).await;
            assert!(
                r.status == Status::Pass && r.http_status == Some(200),
                "{:?} check did not pass against {}: {:?} {}",
                req.kind(),
                bench.base,
                r.status,
                r.message
            );
            assert_eq!(bench.raw_once(req).await, 200, "raw {req:?}");
        }
        // Warm-up: connections open, allocator and caches warm.
        for _ in 0..200 {
            for req in [Req::V2, Req::Manifest] {
                bench.raw_once(req).await;
                bench.check_once(req).await;
                bench.check_record_once(req).await;
            }
        }
        // curl's own start-up (process, first connection, one request), to subtract.
        let mut starts = Vec::new();
        for _ in 0..5 {
            starts.push(bench.curl(Req::V2, 1).1);
        }
        let curl_start_ns = median(&starts);
        let mut lat: BTreeMap<(u8, u8), Vec<f64>> = BTreeMap::new();
        let mut cpu: BTreeMap<(u8, u8), Vec<f64>> = BTreeMap::new();
        for round in 0..rounds {
            for req in [Req::V2, Req::Manifest] {
                // Rotate the order each round so no client always follows another.
                for i in 0..Client::ALL.len() {
                    let client = Client::ALL[(i + round) % Client::ALL.len()];
                    let (l, c) = bench.block(client, req, per, curl_start_ns).await;
                    let key = (req as u8, client as u8);
                    lat.entry(key).or_default().extend(l);
                    cpu.entry(key).or_default().push(c);
                }
            }
        }
        for req in [Req::V2, Req::Manifest] {
            let get = |c: Client| {
                let k = (req as u8, c as u8);
                (
                    median(&lat[&k]),
                    percentile(&lat[&k], 0.9),
                    median(&cpu[&k]),
                )
            };
            let (raw_lat, _, raw_cpu) = get(Client::Reqwest);
            let (curl_lat, _, curl_cpu) = get(Client::Curl);
            for c in Client::ALL {
                let (l, p90, cpu_ns) = get(c);
                let p = format!("ovh.{label}.{}.{}", req.name(), c.name());
                out.put(&format!("{p}.lat_med_us"), l);
                out.put(&format!("{p}.lat_p90_us"), p90);
                out.put(&format!("{p}.cpu_us"), cpu_ns / 1e3);
                if matches!(c, Client::Check | Client::CheckRecord) {
                    out.put(&format!("{p}.added_lat_us"), l - raw_lat);
                    out.put(&format!("{p}.added_lat_vs_curl_us"), l - curl_lat);
                    out.put(&format!("{p}.cpu_x_reqwest"), cpu_ns / raw_cpu);
                    out.put(&format!("{p}.cpu_x_curl"), cpu_ns / curl_cpu);
                    out.put(&format!("{p}.added_cpu_us"), (cpu_ns - raw_cpu) / 1e3);
                }
            }
        }
    });
    let _ = std::fs::remove_dir_all(&tmp);
}

// ---------------------------------------------------------------------------------------------
// compare: exporter /probe vs blackbox_exporter /probe

fn compare(a: &Args) {
    let exporter = a.str("exporter");
    let blackbox = a.str("blackbox");
    let registry = a.str("registry-url").trim_end_matches('/').to_string();
    let epid: u32 = a.num("exporter-pid", 0);
    let bpid: u32 = a.num("blackbox-pid", 0);
    let rpid: u32 = a.num("registry-pid", 0);
    let n: usize = a.num("n", 1000);
    let rounds: usize = a.num("rounds", 5);
    let per = (n / rounds).max(10);
    let mut out = Out::new(a);
    let manifest = format!("{registry}/v2/library/alpine/manifests/latest");
    // (name, check, url, pid, success marker)
    let cases = [
        (
            "exporter",
            "registry",
            format!("{exporter}/probe?target=local&check=registry"),
            epid,
            "check=\"registry\",status=\"pass\"} 1",
        ),
        (
            "blackbox",
            "registry",
            format!("{blackbox}/probe?module=http_v2&target={registry}/v2/"),
            bpid,
            "probe_success 1",
        ),
        (
            "exporter",
            "pull",
            format!("{exporter}/probe?target=local&check=pull"),
            epid,
            "check=\"pull\",status=\"pass\"} 1",
        ),
        (
            "blackbox",
            "pull",
            format!("{blackbox}/probe?module=http_manifest&target={manifest}"),
            bpid,
            "probe_success 1",
        ),
    ];
    let rt = current_thread();
    rt.block_on(async {
        let http = http_client();
        for (name, check, url, _, ok) in &cases {
            let body = http.get(url).send().await.unwrap().text().await.unwrap();
            assert!(
                body.contains(ok),
                "{name} {check} probe did not succeed:\n{body}"
            );
        }
        for _ in 0..100 {
            for (_, _, url, _, _) in &cases {
                let _ = http.get(url).send().await.unwrap().bytes().await;
            }
        }
        let mut lat: HashMap<usize, Vec<f64>> = HashMap::new();
        let mut cpu: HashMap<usize, f64> = HashMap::new();
        let mut reg_cpu: HashMap<usize, f64> = HashMap::new();
        let mut count: HashMap<usize, f64> = HashMap::new();
        let mut size: HashMap<usize, f64> = HashMap::new();
        for round in 0..rounds {
            for i in 0..cases.len() {
                let idx = (i + round) % cases.len();
                let (_, _, url, pid, _) = &cases[idx];
                let c0 = proc_cpu(*pid);
                let r0 = proc_cpu(rpid);
                for _ in 0..per {
                    let t = Instant::now();
                    let body = http.get(url).send().await.unwrap().bytes().await.unwrap();
                    lat.entry(idx)
                        .or_default()
                        .push(t.elapsed().as_secs_f64() * 1e6);
                    size.insert(idx, body.len() as f64);
                }
                *cpu.entry(idx).or_default() += cpu_delta(c0, proc_cpu(*pid));
                *reg_cpu.entry(idx).or_default() += cpu_delta(r0, proc_cpu(rpid));
                *count.entry(idx).or_default() += per as f64;
            }
        }
        let mut by: HashMap<(&str, &str), (f64, f64)> = HashMap::new();
        for (idx, (name, check, _, _, _)) in cases.iter().enumerate() {
            let l = median(&lat[&idx]);
            let c = cpu[&idx] / count[&idx] / 1e3;
            let p = format!("e2e.{check}.{name}");
            out.put(&format!("{p}.lat_med_us"), l);
            out.put(&format!("{p}.lat_p90_us"), percentile(&lat[&idx], 0.9));
            out.put(&format!("{p}.cpu_us"), c);
            out.put(
                &format!("{p}.registry_cpu_us"),
                reg_cpu[&idx] / count[&idx] / 1e3,
            );
            out.put(&format!("{p}.body_bytes"), size[&idx]);
            by.insert((name, check), (l, c));
        }
        for check in ["registry", "pull"] {
            let (el, ec) = by[&("exporter", check)];
            let (bl, bc) = by[&("blackbox", check)];
            out.put(&format!("e2e.{check}.lat_x_blackbox"), el / bl);
            out.put(&format!("e2e.{check}.cpu_x_blackbox"), ec / bc);
        }
        let (e_rss, e_hwm) = rss_kib(epid);
        let (b_rss, b_hwm) = rss_kib(bpid);
        out.put("e2e.exporter.rss_mib", e_rss / 1024.0);
        out.put("e2e.exporter.hwm_mib", e_hwm / 1024.0);
        out.put("e2e.blackbox.rss_mib", b_rss / 1024.0);
        out.put("e2e.blackbox.hwm_mib", b_hwm / 1024.0);
        out.put("e2e.rss_x_blackbox", e_rss / b_rss);
    });
}

// ---------------------------------------------------------------------------------------------
// scale: interval mode against N registries

/// Samples `name{labels} value` of one metric family, keyed by the label text.
fn samples<'a>(text: &'a str, name: &str) -> Vec<(&'a str, f64)> {
    let prefix = format!("{name}{{");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(prefix.as_str())?;
            let close = rest.rfind('}')?;
            let value = rest[close + 1..].split_whitespace().next()?.parse().ok()?;
            Some((&rest[..close], value))
        })
        .collect()
}

fn responder_stats(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

struct Snapshot {
    at: Instant,
    /// Unix time the `/metrics` request was sent: last-run ages are taken from here, so the
    /// scrape's own duration does not count as age.
    sent: f64,
    /// Middle of the `/metrics` request: the time base of the run counters it returned.
    mid: f64,
    runs: f64,
    not_pass: f64,
    per_series: HashMap<String, f64>,
    cpu: Cpu,
    responder_cpu: Option<Cpu>,
    stats: HashMap<String, f64>,
}

/// `/metrics` of `exporter` as bytes, asking for `accept`.
/// `/metrics` of `exporter`, asking for `accept`, received into `buf` (emptied first).
/// Timed to the body's last byte: the buffer is reused across scrapes, as Prometheus'
/// scrape loop reuses its buffers, so the driver's own page faults on a fresh 27 MB are not
/// counted as the exporter's time.
async fn scrape(http: &reqwest::Client, exporter: &str, accept: &str, buf: &mut Vec<u8>) {
    buf.clear();
    let mut resp = http
        .get(format!("{exporter}/metrics"))
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        buf.extend_from_slice(&chunk);
    }
}

async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// Counters at one instant. The CPU and responder counters are read before the scrape when
/// `cpu_first` (a window's end), after it otherwise (a window's start), so the window's CPU
/// holds no scrape.
async fn snapshot(
    http: &reqwest::Client,
    exporter: &str,
    pid: u32,
    rpid: Option<u32>,
    stats_url: Option<&str>,
    cpu_first: bool,
) -> (Snapshot, String) {
    let read = || async {
        let cpu = proc_cpu(pid);
        let responder_cpu = rpid.map(proc_cpu);
        let stats = match stats_url {
            Some(url) => responder_stats(&get_text(http, url).await),
            None => HashMap::new(),
        };
        (Instant::now(), cpu, responder_cpu, stats)
    };
    let first = if cpu_first { Some(read().await) } else { None };
    let sent = unix_now();
    let text = get_text(http, &format!("{exporter}/metrics")).await;
    let mid = (sent + unix_now()) / 2.0;
    let (at, cpu, responder_cpu, stats) = match first {
        Some(v) => v,
        None => read().await,
    };
    let mut runs = 0.0;
    let mut not_pass = 0.0;
    let mut per_series: HashMap<String, f64> = HashMap::new();
    for (labels, v) in samples(&text, "oci_registry_check_runs_total") {
        runs += v;
        if !labels.contains("status=\"pass\"") {
            not_pass += v;
        }
        // Key by registry and check, summing statuses.
        let key: String = labels
            .split(',')
            .filter(|p| !p.starts_with("status="))
            .collect::<Vec<_>>()
            .join(",");
        *per_series.entry(key).or_default() += v;
    }
    (
        Snapshot {
            at,
            sent,
            mid,
            runs,
            not_pass,
            per_series,
            cpu,
            responder_cpu,
            stats,
        },
        text,
    )
}

/// The smallest fraction of the interval that holds `share` of the phases (run time modulo the
/// interval): about `share` for runs spread evenly, much less for runs that come in bursts.
fn phase_concentration(ts: &[f64], interval: f64, share: f64) -> f64 {
    if ts.len() < 2 {
        return f64::NAN;
    }
    let mut ph: Vec<f64> = ts.iter().map(|t| (t % interval) / interval).collect();
    ph.sort_by(|a, b| a.total_cmp(b));
    let n = ph.len();
    let k = ((n as f64 * share).ceil() as usize).clamp(1, n);
    let mut best = 1.0f64;
    for i in 0..n {
        let j = i + k - 1;
        let span = if j < n {
            ph[j] - ph[i]
        } else {
            ph[j - n] + 1.0 - ph[i]
        };
        best = best.min(span);
    }
    best
}

/// Sockets a process has open (listeners included): against a real registry, which counts
/// no connections for us, how many connections the exporter keeps.
fn open_sockets(pid: u32) -> f64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
                })
                .count() as f64
        })
        .unwrap_or(f64::NAN)
}

/// Ages (s) of every series' last run at `now`, from a `/metrics` text.
fn last_runs(text: &str) -> Vec<f64> {
    samples(text, "oci_registry_check_last_run_timestamp_seconds")
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

fn scale(a: &Args) {
    let exporter = a.str("exporter");
    let pid: u32 = a.num("pid", 0);
    let rpid: Option<u32> = a.opt("responder-pid").map(|v| v.parse().unwrap());
    // The responder's counters; a real registry has none.
    let stats_url = a.opt("stats");
    let n: f64 = a.num("registries", 0.0);
    let checks: f64 = a.num("checks", 2.0);
    let interval: f64 = a.num("interval-s", 2.0);
    let window: f64 = a.num("window-s", 15.0);
    let scrapes: usize = a.num("scrapes", 5);
    let scrape_every: f64 = a.num("scrape-every-s", 1.0);
    let started_ms: f64 = a.num("started-ms", 0.0);
    let label = a.str("label");
    let expires_in: f64 = a.num("expires-in", 0.0);
    let mut out = Out::new(a);
    let p = format!("scale.{label}");
    let rt = current_thread();
    rt.block_on(async {
        let http = http_client();
        // Ready: every registry has finished its first round.
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let ok = match http.get(format!("{exporter}/-/ready")).send().await {
                Ok(r) => r.status().is_success(),
                Err(_) => false,
            };
            if ok {
                break;
            }
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let dead = state.is_empty()
                || state
                    .rsplit(") ")
                    .next()
                    .is_some_and(|r| r.starts_with('Z'));
            assert!(!dead, "the exporter (pid {pid}) exited before it was ready");
            assert!(Instant::now() < deadline, "exporter not ready after 300 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ready_s = unix_now() - started_ms / 1e3;
        let (_, hwm_at_ready) = rss_kib(pid);
        // Let the first rounds' burst pass: two intervals, unless told otherwise (at a
        // one-minute interval one is enough: every registry is on its phase after it).
        let settle: f64 = a.num("settle-s", 2.0 * interval);
        tokio::time::sleep(Duration::from_secs_f64(settle)).await;

        // Phase A: the check load alone, no scrape inside the window.
        let (s0, _) = snapshot(&http, &exporter, pid, rpid, stats_url.as_deref(), false).await;
        tokio::time::sleep_until((s0.at + Duration::from_secs_f64(window)).into()).await;
        let (s1, text) = snapshot(&http, &exporter, pid, rpid, stats_url.as_deref(), true).await;
        let scrape_at = s1.sent;
        // CPU between the two reads (no scrape inside); runs between the two scrapes' middles.
        let elapsed = (s1.at - s0.at).as_secs_f64();
        let runs_elapsed = s1.mid - s0.mid;
        let runs = s1.runs - s0.runs;
        let expected = n * checks / interval;
        let rate = runs / runs_elapsed;
        let cpu = cpu_delta(s0.cpu, s1.cpu);
        let (rss, _) = rss_kib(pid);
        let stat = |k: &str| s1.stats.get(k).unwrap_or(&0.0) - s0.stats.get(k).unwrap_or(&0.0);
        out.put(&format!("{p}.registries"), n);
        out.put(&format!("{p}.ready_s"), ready_s);
        out.put(&format!("{p}.expected_runs_per_s"), expected);
        out.put(&format!("{p}.runs_per_s"), rate);
        out.put(&format!("{p}.rate_x_expected"), rate / expected);
        out.put(&format!("{p}.not_pass_runs"), s1.not_pass - s0.not_pass);
        out.put(&format!("{p}.cpu_pct"), cpu / elapsed / 1e7);
        out.put(&format!("{p}.cpu_us_per_run"), cpu / (rate * elapsed) / 1e3);
        if let (Some(r0), Some(r1)) = (s0.responder_cpu, s1.responder_cpu) {
            out.put(
                &format!("{p}.responder_cpu_pct"),
                cpu_delta(r0, r1) / elapsed / 1e7,
            );
        }
        out.put(&format!("{p}.rss_mib"), rss / 1024.0);
        out.put(&format!("{p}.hwm_at_ready_mib"), hwm_at_ready / 1024.0);
        out.put(&format!("{p}.interval_s"), interval);
        out.put(&format!("{p}.sockets"), open_sockets(pid));
        if stats_url.is_some() {
            out.put(&format!("{p}.new_conns"), stat("connections"));
            out.put(
                &format!("{p}.conns_per_run"),
                stat("connections") / (rate * elapsed),
            );
            out.put(&format!("{p}.conns_total"), s1.stats["connections"]);
            out.put(&format!("{p}.token_requests"), stat("token_requests"));
            out.put(
                &format!("{p}.tokens_per_run"),
                stat("token_requests") / runs,
            );
            out.put(&format!("{p}.tokens_total"), s1.stats["token_requests"]);
            out.put(
                &format!("{p}.tokens_total_per_run"),
                s1.stats["token_requests"] / s1.runs,
            );
        }
        if expires_in > 0.0 {
            // The client renews min(10 s, lifetime/2) before expiry: one token per registry and
            // renewal period is the floor; over the window that is N * window / period.
            let period = expires_in - f64::min(10.0, expires_in / 2.0);
            let ideal = n * elapsed / period;
            out.put(
                &format!("{p}.ideal_tokens_per_run"),
                ideal / (rate * elapsed),
            );
            out.put(&format!("{p}.renew_period_s"), period);
        }
        // Per registry × check: runs in the window vs the expected count.
        let per_expected = runs_elapsed / interval;
        let mut per: Vec<f64> = s1
            .per_series
            .iter()
            .map(|(k, v)| v - s0.per_series.get(k).unwrap_or(&0.0))
            .collect();
        per.sort_by(|a, b| a.total_cmp(b));
        // A window shorter than the interval holds at most one run of a series: its minimum
        // is then 0 by construction, not a slip.
        if window >= interval {
            out.put(
                &format!("{p}.series_min_runs_x_expected"),
                per[0] / per_expected,
            );
        }
        // Last-run ages at the window's final scrape, and how the run phases spread.
        let ts = last_runs(&text);
        let ages: Vec<f64> = ts.iter().map(|t| scrape_at - t).collect();
        let age_max = percentile(&ages, 1.0);
        out.put(&format!("{p}.age_p50_s"), median(&ages));
        out.put(&format!("{p}.age_p99_s"), percentile(&ages, 0.99));
        out.put(&format!("{p}.age_max_s"), age_max);
        out.put(
            &format!("{p}.phase90_share"),
            phase_concentration(&ts, interval, 0.9),
        );
        let durations: Vec<f64> = samples(&text, "oci_registry_check_duration_seconds")
            .into_iter()
            .map(|(_, v)| v * 1e3)
            .collect();
        out.put(&format!("{p}.check_ms_p50"), median(&durations));
        out.put(&format!("{p}.check_ms_p99"), percentile(&durations, 0.99));
        // Slip: a round started late (a last run older than the longest jittered interval plus
        // a quarter second), or fewer runs than expected beyond counting noise (a window cuts
        // each series' runs to ±1).
        let tolerance = f64::max(0.03, 2.0 / (expected * runs_elapsed).sqrt());
        let slip = age_max > 1.05 * interval + 0.25 || rate < (1.0 - tolerance) * expected;
        out.put(&format!("{p}.slip"), if slip { 1.0 } else { 0.0 });

        // Phase B: scrapes, one every `scrape_every` seconds, with their CPU cost.
        let background = cpu / elapsed; // ns of check work per second
        let mut scrape_ms = Vec::new();
        let mut scrape_cpu_ms = Vec::new();
        let mut scrape_bytes = 0.0;
        let mut rss_max: f64 = rss;
        let b0 = Instant::now();
        let mut text = String::new();
        let mut buf = Vec::new();
        let mut scraped_at = unix_now();
        for i in 0..scrapes {
            tokio::time::sleep_until(
                (b0 + Duration::from_secs_f64(scrape_every * i as f64)).into(),
            )
            .await;
            let c0 = proc_cpu(pid);
            let t = Instant::now();
            scraped_at = unix_now();
            scrape(&http, &exporter, "text/plain", &mut buf).await;
            let took = t.elapsed().as_secs_f64();
            // Turning it into text is the driver's own work, not timed.
            text = String::from_utf8(buf.clone()).unwrap();
            // The checks go on during a scrape: subtract their average rate (an estimate; they
            // also stall while the scrape holds a worker, so this can undershoot).
            let c = (cpu_delta(c0, proc_cpu(pid)) - background * took).max(0.0);
            scrape_ms.push(took * 1e3);
            scrape_cpu_ms.push(c / 1e6);
            scrape_bytes = text.len() as f64;
            rss_max = rss_max.max(rss_kib(pid).0);
        }
        let t = Instant::now();
        let accept_om = "application/openmetrics-text; version=1.0.0";
        scrape(&http, &exporter, accept_om, &mut buf).await;
        let om = buf;
        let om_ms = t.elapsed().as_secs_f64() * 1e3;
        let (_, hwm) = rss_kib(pid);
        out.put(&format!("{p}.rss_scraped_mib"), rss_max / 1024.0);
        out.put(&format!("{p}.hwm_mib"), hwm / 1024.0);
        out.put(&format!("{p}.scrape_ms"), median(&scrape_ms));
        out.put(&format!("{p}.scrape_max_ms"), percentile(&scrape_ms, 1.0));
        out.put(&format!("{p}.scrape_cpu_ms"), median(&scrape_cpu_ms));
        out.put(&format!("{p}.scrape_kib"), scrape_bytes / 1024.0);
        out.put(&format!("{p}.scrape_om_ms"), om_ms);
        out.put(&format!("{p}.scrape_om_kib"), om.len() as f64 / 1024.0);
        let ages: Vec<f64> = last_runs(&text).iter().map(|t| scraped_at - t).collect();
        out.put(&format!("{p}.age_max_scraping_s"), percentile(&ages, 1.0));
    });
}

// ---------------------------------------------------------------------------------------------
// page: the `/` status page for many registries

fn page(a: &Args) {
    let n: usize = a.num("registries", 1000);
    let reps: usize = a.num("reps", 11);
    let mut out = Out::new(a);
    let app = App::new(many_registries_config(n, CheckKind::ALL)).expect("app");
    let base = oci_registry_exporter::catalogue::DEFAULT_RUNBOOK_BASE_URL;
    // Every tenth registry rejects the credentials: a failing root, its consequences, and
    // their advice, as a real outage looks on the page.
    for (i, rt) in app.current().targets.iter().enumerate() {
        for &kind in CheckKind::ALL {
            let mut r = if i % 10 == 0 && kind != CheckKind::Registry {
                CheckResult::new(
                    kind,
                    Status::Fail,
                    Reason::InvalidCredentials,
                    "the registry rejected the credentials (basic): they are wrong, rotated or revoked; update the secret",
                )
                .with_http_status(401)
            } else {
                result_for(kind)
            };
            oci_registry_exporter::catalogue::annotate(&mut r, base);
            app.store.put(&rt.target.name, r);
        }
    }
    for (label, query) in [("capped", ""), ("all", "all=true")] {
        let mut ms = Vec::with_capacity(reps);
        let mut len = 0;
        for _ in 0..reps {
            let t = Instant::now();
            let html = oci_registry_exporter::status_page::render(
                &app,
                query,
                "/metrics",
                SystemTime::now(),
            );
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            len = html.len();
            std::hint::black_box(html);
        }
        out.put(&format!("page.{n}.{label}_ms"), percentile(&ms, 0.5));
        out.put(&format!("page.{n}.{label}_kib"), len as f64 / 1024.0);
    }
}

// ---------------------------------------------------------------------------------------------
// startup: App::new per registry

fn startup(a: &Args) {
    let n: usize = a.num("registries", 1000);
    let mut out = Out::new(a);
    let config = many_registries_config(n, CheckKind::ALL);
    let (rss0, _) = rss_kib(std::process::id());
    let t = Instant::now();
    let app = App::new(config).expect("app");
    let took = t.elapsed().as_secs_f64();
    let (rss1, _) = rss_kib(std::process::id());
    std::hint::black_box(&app);
    out.put(
        &format!("startup.{n}.app_new_ms_per_registry"),
        took * 1e3 / n as f64,
    );
    out.put(&format!("startup.{n}.app_new_s"), took);
    out.put(
        &format!("startup.{n}.rss_kib_per_registry"),
        (rss1 - rss0) / n as f64,
    );
}

// ---------------------------------------------------------------------------------------------
// render: Store::put and Metrics::encode at scale

fn many_registries_config(n: usize, checks: &[CheckKind]) -> Config {
    let names: Vec<String> = checks
        .iter()
        .map(|c| format!("\"{}\"", c.short_name()))
        .collect();
    let mut text = format!(
        "max_concurrency = 16\n[defaults]\ninterval = \"60s\"\nchecks = [{}]\n",
        names.join(", ")
    );
    for i in 0..n {
        let _ = write!(
            text,
            "[[registries]]\nname = \"registry-{i:05}\"\nurl = \"http://127.0.0.1:5000/r{i}\"\n"
        );
    }
    load_config(&text)
}

/// A passing result of `kind` with the facts such a run reports, so every series a healthy
/// registry has in steady state exists (request histogram observations are not needed: the
/// series exist once recorded).
fn result_for(kind: CheckKind) -> CheckResult {
    let mut r = CheckResult::new(kind, Status::Pass, Reason::Ok, "the check passed")
        .with_http_status(200)
        .with_evidence("api_version", "registry/2.0");
    r.api_version = Some("registry/2.0".into());
    r.duration = Duration::from_micros(850);
    match kind.short_name() {
        "credentials" => r.facts.auth_method = Some(AuthMethod::Anonymous),
        "push" => r.facts.upload_cancelled = Some(true),
        "capabilities" => {
            r.facts.capabilities = Capability::ALL
                .iter()
                .map(|&c| (c, CapabilityStatus::Supported))
                .collect()
        }
        "referrers" => r.facts.referrers_count = Some(0),
        _ => {}
    }
    r
}

/// `--sets 1000:all,1000:registry+pull`: registries × which checks.
fn render(a: &Args) {
    let reps: usize = a.num("reps", 15);
    let mut out = Out::new(a);
    for set in a.str("sets").split(',') {
        let (n, which) = set.split_once(':').expect("--sets N:all|name+name");
        let n: usize = n.parse().expect("registry count");
        let kinds: Vec<CheckKind> = if which == "all" {
            CheckKind::ALL.to_vec()
        } else {
            which
                .split('+')
                .map(|c| CheckKind::parse(c).unwrap_or_else(|| panic!("unknown check {c}")))
                .collect()
        };
        let config = many_registries_config(n, &kinds);
        let m = Metrics::new(oci_registry_exporter::catalogue::DEFAULT_RUNBOOK_BASE_URL);
        let store = Store::new(0);
        for t in &config.registries {
            store.declare(t);
        }
        let results: Vec<CheckResult> = kinds.iter().map(|&k| result_for(k)).collect();
        // First record creates the series; the timed ones update them, as in steady state.
        for t in &config.registries {
            for r in &results {
                store.put(&t.name, r.clone());
            }
        }
        // The clones are made before the clock starts: recording is what is timed.
        let batch: Vec<(&str, CheckResult)> = config
            .registries
            .iter()
            .flat_map(|t| results.iter().map(|r| (t.name.as_str(), r.clone())))
            .collect();
        let t = Instant::now();
        for (name, r) in batch {
            m.note(&r);
            store.put(name, r);
        }
        let record_us = t.elapsed().as_secs_f64() * 1e6 / (n * kinds.len()) as f64;
        let mut om = Vec::new();
        let mut classic = Vec::new();
        let mut om_len = 0;
        let mut classic_len = 0;
        // As the server encodes: in pieces, each handed on (here: counted and dropped).
        let encode = |format| {
            let mut len = 0;
            m.encode_chunks(&store, format, &mut |piece| {
                len += std::hint::black_box(piece).len();
                true
            });
            len
        };
        for _ in 0..reps {
            let t = Instant::now();
            om_len = encode(Format::OpenMetrics);
            om.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            classic_len = encode(Format::Classic);
            classic.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let p = format!("render.{n}x{}", kinds.len());
        out.put(&format!("{p}.registries"), n as f64);
        out.put(&format!("{p}.checks"), kinds.len() as f64);
        out.put(&format!("{p}.record_us"), record_us);
        out.put(&format!("{p}.om_ms"), median(&om));
        out.put(&format!("{p}.classic_ms"), median(&classic));
        out.put(&format!("{p}.om_kib"), om_len as f64 / 1024.0);
        out.put(&format!("{p}.classic_kib"), classic_len as f64 / 1024.0);
        let text = m.encode(&store, Format::Classic);
        let series = text.lines().filter(|l| !l.starts_with('#')).count();
        out.put(&format!("{p}.series"), series as f64);
        // Series per registry by family, for the report's explanation.
        if a.opt("families").is_some() {
            let mut fam: BTreeMap<&str, usize> = BTreeMap::new();
            for l in text.lines().filter(|l| !l.starts_with('#')) {
                let name = l.split(['{', ' ']).next().unwrap_or("");
                *fam.entry(name).or_default() += 1;
            }
            for (f, c) in fam {
                eprintln!("    {f}: {:.1} per registry", c as f64 / n as f64);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// loop: one case, many times, for profilers

fn run_loop(a: &Args) {
    let base = a.str("url").trim_end_matches('/').to_string();
    let case = a.str("case");
    let n: usize = a.num("n", 10_000);
    let rt = current_thread();
    rt.block_on(async {
        let bench = Bench::new(
            base,
            "library/alpine".into(),
            "latest".into(),
            std::env::temp_dir(),
        );
        let t = Instant::now();
        let c0 = self_cpu_ns();
        for _ in 0..n {
            match case.as_str() {
                "reqwest_v2" => {
                    bench.raw_once(Req::V2).await;
                }
                "reqwest_manifest" => {
                    bench.raw_once(Req::Manifest).await;
                }
                "check_registry" => {
                    bench.check_once(Req::V2).await;
                }
                "check_pull" => {
                    bench.check_once(Req::Manifest).await;
                }
                "record_registry" => bench.check_record_once(Req::V2).await,
                "record_pull" => bench.check_record_once(Req::Manifest).await,
                other => panic!("unknown case {other}"),
            }
        }
        eprintln!(
            "{case}: {n} iterations, {:.1} µs wall, {:.1} µs CPU each",
            t.elapsed().as_secs_f64() * 1e6 / n as f64,
            (self_cpu_ns() - c0) / 1e3 / n as f64
        );
    });
}

// ---------------------------------------------------------------------------------------------
// report: the tables

struct Results(BTreeMap<String, Vec<f64>>);

impl Results {
    fn load(path: &Path) -> Results {
        let mut map: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for line in std::io::BufReader::new(f).lines() {
            let line = line.unwrap();
            let mut it = line.split('\t');
            let (Some(_run), Some(k), Some(v)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if let Ok(v) = v.parse() {
                map.entry(k.to_string()).or_default().push(v);
            }
        }
        Results(map)
    }
    fn med(&self, k: &str) -> f64 {
        self.0.get(k).map(|v| median(v)).unwrap_or(f64::NAN)
    }
    /// `median [min–max]` over runs, or the median alone for one run.
    fn cell(&self, k: &str) -> String {
        match self.0.get(k) {
            None => "–".into(),
            Some(v) if v.len() == 1 => fmt_num(v[0]),
            Some(v) => {
                let lo = percentile(v, 0.0);
                let hi = percentile(v, 1.0);
                format!("{} [{}–{}]", fmt_num(median(v)), fmt_num(lo), fmt_num(hi))
            }
        }
    }
    fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
    fn runs(&self, k: &str) -> usize {
        self.0.get(k).map(|v| v.len()).unwrap_or(0)
    }
}

fn row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

fn report(a: &Args) {
    let r = Results::load(Path::new(&a.str("in")));
    let mut s = String::new();
    let c = |k: &str| r.cell(k);

    // 1. Overhead.
    for label in ["real", "fast"] {
        if !r.has(&format!("ovh.{label}.v2.check.lat_med_us")) {
            continue;
        }
        let what = if label == "real" {
            "a real Distribution registry (docker-registry 2.8)"
        } else {
            "the bench responder (a static Rust endpoint: isolates the client side)"
        };
        let _ = writeln!(
            s,
            "\n### 1{}. Per-check overhead, library level, against {what}\n",
            if label == "real" { "a" } else { "b" }
        );
        let _ = writeln!(
            s,
            "Median over {} runs [min–max]. Latency: median per request; CPU: the client process' CPU per request.\n",
            r.runs(&format!("ovh.{label}.v2.check.lat_med_us"))
        );
        s += &row(&[
            "request".into(),
            "client".into(),
            "latency µs (median)".into(),
            "latency µs (p90)".into(),
            "CPU µs/request".into(),
            "added latency µs vs reqwest".into(),
            "added latency µs vs curl".into(),
            "CPU × reqwest".into(),
            "CPU × curl".into(),
        ]);
        s += "|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
        for (req, shown) in [("v2", "GET /v2/"), ("manifest", "HEAD manifest")] {
            for (client, cname) in [
                ("curl", "curl (one process, keep-alive)"),
                ("reqwest", "bare reqwest::Client"),
                ("check", "`run_check` (`registry`/`pull`)"),
                ("check_record", "`App::execute` + `App::record`"),
            ] {
                let p = format!("ovh.{label}.{req}.{client}");
                let extra = |k: &str| {
                    if client.starts_with("check") {
                        c(&format!("{p}.{k}"))
                    } else {
                        "".into()
                    }
                };
                s += &row(&[
                    shown.into(),
                    cname.into(),
                    c(&format!("{p}.lat_med_us")),
                    c(&format!("{p}.lat_p90_us")),
                    c(&format!("{p}.cpu_us")),
                    extra("added_lat_us"),
                    extra("added_lat_vs_curl_us"),
                    extra("cpu_x_reqwest"),
                    extra("cpu_x_curl"),
                ]);
            }
        }
    }

    // 2. Exporter vs blackbox.
    if r.has("e2e.registry.exporter.cpu_us") {
        let _ = writeln!(
            s,
            "\n### 2. End to end: exporter `/probe` vs prometheus-blackbox-exporter `/probe`, same registry, same run\n"
        );
        let _ = writeln!(
            s,
            "Median over {} runs [min–max]. CPU per probe from /proc/<pid> deltas of each exporter process; the registry's CPU per probe alongside.\n",
            r.runs("e2e.registry.exporter.cpu_us")
        );
        s += &row(&[
            "probe".into(),
            "prober".into(),
            "latency µs (median)".into(),
            "latency µs (p90)".into(),
            "prober CPU µs/probe".into(),
            "registry CPU µs/probe".into(),
            "answer bytes".into(),
        ]);
        s += "|---|---|---:|---:|---:|---:|---:|\n";
        for (check, shown) in [
            ("registry", "GET /v2/ (`check=registry` / module `http_v2`)"),
            (
                "pull",
                "HEAD manifest (`check=pull` / module `http_manifest`)",
            ),
        ] {
            for who in ["exporter", "blackbox"] {
                let p = format!("e2e.{check}.{who}");
                s += &row(&[
                    shown.into(),
                    who.into(),
                    c(&format!("{p}.lat_med_us")),
                    c(&format!("{p}.lat_p90_us")),
                    c(&format!("{p}.cpu_us")),
                    c(&format!("{p}.registry_cpu_us")),
                    c(&format!("{p}.body_bytes")),
                ]);
            }
        }
        s += "\n";
        s += &row(&[
            "ratio (exporter ÷ blackbox, per run)".into(),
            "value".into(),
        ]);
        s += "|---|---:|\n";
        s += &row(&["latency, registry".into(), c("e2e.registry.lat_x_blackbox")]);
        s += &row(&[
            "CPU per probe, registry".into(),
            c("e2e.registry.cpu_x_blackbox"),
        ]);
        s += &row(&["latency, pull".into(), c("e2e.pull.lat_x_blackbox")]);
        s += &row(&["CPU per probe, pull".into(), c("e2e.pull.cpu_x_blackbox")]);
        s += &row(&[
            "RSS after the run (MiB: exporter / blackbox)".into(),
            format!(
                "{} / {}",
                c("e2e.exporter.rss_mib"),
                c("e2e.blackbox.rss_mib")
            ),
        ]);
        s += &row(&["RSS".into(), c("e2e.rss_x_blackbox")]);
        if r.has("ovh.real.v2.check_record.cpu_us") {
            // Same script iteration: the library-level cost of one interval-mode check.
            let lib = r.med("ovh.real.v2.check_record.cpu_us");
            let bb = r.med("e2e.registry.blackbox.cpu_us");
            s += &row(&[
                "interval-mode check (execute+record, 1a) ÷ blackbox probe, registry".into(),
                fmt_num(lib / bb),
            ]);
        }
    }

    // 3. Scale, on the responder ("open-N") and on a real Distribution ("dist-N").
    let scale_points = |kind: &str| {
        let mut ns: Vec<(f64, String)> =
            r.0.keys()
                .filter_map(|k| {
                    let rest = k.strip_prefix(&format!("scale.{kind}"))?;
                    let label = rest.strip_suffix(".registries")?;
                    Some((r.med(k), format!("{kind}{label}")))
                })
                .collect();
        ns.sort_by(|a, b| a.0.total_cmp(&b.0));
        ns
    };
    let ns = scale_points("open");
    let dist_ns = scale_points("dist");
    for (section, ns) in [("3", &ns), ("3b", &dist_ns)] {
        if ns.is_empty() {
            continue;
        }
        let real = section == "3b";
        let first = &ns[0].1;
        let interval = r.med(&format!("scale.{first}.interval_s"));
        let interval = if interval.is_nan() { 2.0 } else { interval };
        let _ = writeln!(
            s,
            "\n### {section}. Scale: interval mode, N registries on {}, checks = [registry, pull]\n",
            if real {
                "one real Distribution (docker-registry 2.8, the same URL)"
            } else {
                "one responder"
            }
        );
        let _ = writeln!(
            s,
            "interval {} s, so the expected rate is N × 2 ÷ {} check-runs/s; median over {} runs [min–max] where repeated. Measured over a window after the first rounds.\n",
            fmt_num(interval),
            fmt_num(interval),
            r.runs(&format!("scale.{first}.runs_per_s"))
        );
        let cols = [
            ("expected runs/s", "expected_runs_per_s"),
            ("runs/s", "runs_per_s"),
            ("runs ÷ expected", "rate_x_expected"),
            ("non-pass runs", "not_pass_runs"),
            ("exporter CPU % (of one core)", "cpu_pct"),
            ("exporter CPU µs/run", "cpu_us_per_run"),
            (
                if real {
                    "registry CPU % (docker-registry)"
                } else {
                    "responder CPU %"
                },
                "responder_cpu_pct",
            ),
            ("RSS MiB (checks only)", "rss_mib"),
            ("RSS MiB (while scraped)", "rss_scraped_mib"),
            ("peak RSS MiB", "hwm_mib"),
            ("last-run age p99 s", "age_p99_s"),
            ("last-run age max s", "age_max_s"),
            (
                "last-run age max s, scraped every 1 s",
                "age_max_scraping_s",
            ),
            (
                "min runs of a series ÷ expected",
                "series_min_runs_x_expected",
            ),
            ("share of interval holding 90 % of runs", "phase90_share"),
            ("check duration ms p50", "check_ms_p50"),
            ("check duration ms p99", "check_ms_p99"),
            ("runs with a slip (of all runs)", "slip"),
            ("/metrics ms (classic, median)", "scrape_ms"),
            ("/metrics ms (classic, max)", "scrape_max_ms"),
            (
                "exporter CPU ms during one scrape (checks go on)",
                "scrape_cpu_ms",
            ),
            ("/metrics ms (OpenMetrics)", "scrape_om_ms"),
            ("/metrics KiB", "scrape_kib"),
            ("new TCP conns/run", "conns_per_run"),
            ("sockets open (exporter)", "sockets"),
            ("TCP conns since start", "conns_total"),
            ("ready after s", "ready_s"),
        ];
        let mut header = vec!["N registries".to_string()];
        header.extend(ns.iter().map(|(n, _)| format!("{n:.0}")));
        s += &row(&header);
        s += &format!("|---|{}\n", "---:|".repeat(ns.len()));
        for (name, key) in cols {
            // The responder's counters exist only on it.
            if !ns.iter().any(|(_, l)| r.has(&format!("scale.{l}.{key}"))) && key != "slip" {
                continue;
            }
            let mut cells = vec![name.to_string()];
            if key == "slip" {
                cells.extend(ns.iter().map(|(_, l)| {
                    let v =
                        r.0.get(&format!("scale.{l}.slip"))
                            .cloned()
                            .unwrap_or_default();
                    format!("{} of {}", v.iter().filter(|x| **x > 0.0).count(), v.len())
                }));
                s += &row(&cells);
                continue;
            }
            cells.extend(ns.iter().map(|(_, l)| c(&format!("scale.{l}.{key}"))));
            s += &row(&cells);
        }
    }

    // 4-5. Tokens and connections.
    let token_labels: Vec<String> =
        r.0.keys()
            .filter_map(|k| {
                let rest = k.strip_prefix("scale.token")?;
                Some(format!("token{}", rest.strip_suffix(".registries")?))
            })
            .collect();
    if !token_labels.is_empty() {
        let _ = writeln!(
            s,
            "\n### 4–5. Token flow and connection reuse (registries behind Bearer challenges; one responder counts /token requests and accepted TCP connections)\n"
        );
        s += &row(&[
            "token lifetime s".into(),
            "registries".into(),
            "check-runs/s".into(),
            "token requests in window".into(),
            "token requests/run (window)".into(),
            "floor: 1 token per registry per renewal period, per run".into(),
            "token requests/run (since start)".into(),
            "new TCP conns/run (window)".into(),
            "TCP conns since start".into(),
            "non-pass runs".into(),
        ]);
        s += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for l in &token_labels {
            let p = format!("scale.{l}");
            s += &row(&[
                l.trim_start_matches("token").trim_start_matches('-').into(),
                c(&format!("{p}.registries")),
                c(&format!("{p}.runs_per_s")),
                c(&format!("{p}.token_requests")),
                c(&format!("{p}.tokens_per_run")),
                c(&format!("{p}.ideal_tokens_per_run")),
                c(&format!("{p}.tokens_total_per_run")),
                c(&format!("{p}.conns_per_run")),
                c(&format!("{p}.conns_total")),
                c(&format!("{p}.not_pass_runs")),
            ]);
        }
    }

    // Render.
    let mut sets: Vec<(f64, f64, String)> =
        r.0.keys()
            .filter_map(|k| {
                let set = k.strip_prefix("render.")?.strip_suffix(".record_us")?;
                let p = format!("render.{set}");
                Some((
                    r.med(&format!("{p}.registries")),
                    r.med(&format!("{p}.checks")),
                    set.to_string(),
                ))
            })
            .collect();
    sets.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    if !sets.is_empty() {
        let _ = writeln!(
            s,
            "\n### 6. `/metrics` rendering and recording, library level (`Metrics::encode_chunks`, `Store::put`; every series of a healthy registry present)\n"
        );
        s += &row(&[
            "registries × checks".into(),
            "series".into(),
            "record µs/result".into(),
            "OpenMetrics ms".into(),
            "classic ms".into(),
            "KiB".into(),
        ]);
        s += "|---|---:|---:|---:|---:|---:|\n";
        for (n, checks, set) in &sets {
            let p = format!("render.{set}");
            s += &row(&[
                format!("{n:.0} × {checks:.0}"),
                c(&format!("{p}.series")),
                c(&format!("{p}.record_us")),
                c(&format!("{p}.om_ms")),
                c(&format!("{p}.classic_ms")),
                c(&format!("{p}.om_kib")),
            ]);
        }
    }
    if let Some(k) =
        r.0.keys()
            .find(|k| k.starts_with("startup.") && k.ends_with(".app_new_s"))
    {
        let p = k.strip_suffix(".app_new_s").unwrap().to_string();
        let n = p.strip_prefix("startup.").unwrap_or("?").to_string();
        let _ = writeln!(
            s,
            "\n### 7. Start-up, library level (`App::new` with {n} registries)\n"
        );
        s += &row(&["figure".into(), "value".into()]);
        s += "|---|---:|\n";
        s += &row(&["`App::new` s".into(), c(&format!("{p}.app_new_s"))]);
        s += &row(&[
            "ms per registry".into(),
            c(&format!("{p}.app_new_ms_per_registry")),
        ]);
        s += &row(&[
            "RSS KiB per registry".into(),
            c(&format!("{p}.rss_kib_per_registry")),
        ]);
    }

    // Targets.
    s += "\n### Targets\n\n";
    s += &row(&["target".into(), "measured (median)".into(), "met".into()]);
    s += "|---|---|---|\n";
    let mut target = |name: &str, value: f64, shown: String, ok: bool| {
        if value.is_finite() {
            s.push_str(&row(&[
                name.into(),
                shown,
                if ok { "yes".into() } else { "**no**".into() },
            ]));
        }
    };
    for req in ["v2", "manifest"] {
        let v = r.med(&format!("ovh.real.{req}.check.added_lat_us"));
        target(
            &format!("added latency ≤ 100 µs ({req}, real registry, vs reqwest)"),
            v,
            format!("{} µs", fmt_num(v)),
            v <= 100.0,
        );
        let v = r.med(&format!("ovh.fast.{req}.check.added_lat_us"));
        target(
            &format!("added latency ≤ 100 µs ({req}, fast responder, vs reqwest)"),
            v,
            format!("{} µs", fmt_num(v)),
            v <= 100.0,
        );
    }
    let v = r.med("e2e.registry.cpu_x_blackbox");
    target(
        "CPU per simple check ≤ ⅓ of blackbox per probe (`/probe` vs `/probe`)",
        v,
        format!("{} ×", fmt_num(v)),
        v <= 1.0 / 3.0,
    );
    let lib = r.med("ovh.real.v2.check_record.cpu_us") / r.med("e2e.registry.blackbox.cpu_us");
    target(
        "CPU per simple check ≤ ⅓ of blackbox per probe (interval-mode check vs `/probe`)",
        lib,
        format!("{} ×", fmt_num(lib)),
        lib <= 1.0 / 3.0,
    );
    let v = r.med("scale.open-1000.rss_mib");
    target(
        "RSS ≤ 15 MiB at 1,000 registries",
        v,
        format!("{} MiB", fmt_num(v)),
        v <= 15.0,
    );
    for (n, rss, scrape) in [(1000, 15.0, 5.0), (10000, 64.0, 50.0)] {
        let l = format!("dist-{n}");
        if !r.has(&format!("scale.{l}.hwm_mib")) {
            continue;
        }
        let v = r.med(&format!("scale.{l}.hwm_mib"));
        target(
            &format!(
                "peak RSS ≤ {rss} MiB at {n} registries × (registry, pull), real Distribution"
            ),
            v,
            format!("{} MiB", fmt_num(v)),
            v <= rss,
        );
        let v = r.med(&format!("scale.{l}.scrape_ms"));
        target(
            &format!(
                "`/metrics` ≤ {scrape} ms at {n} × 2 while checks run, real Distribution (classic, median)"
            ),
            v,
            format!("{} ms", fmt_num(v)),
            v <= scrape,
        );
    }
    let om = r.med("render.1000x6.om_ms");
    let classic = r.med("render.1000x6.classic_ms");
    target(
        "`/metrics` for 1,000 registries × 6 checks rendered in ≤ 10 ms (library; OpenMetrics / classic)",
        om,
        format!("{} ms / {} ms", fmt_num(om), fmt_num(classic)),
        om <= 10.0 && classic <= 10.0,
    );
    let rate = r.med("scale.open-5000.runs_per_s");
    let slips = r.0.get("scale.open-5000.slip").cloned().unwrap_or_default();
    let slipped = slips.iter().filter(|v| **v > 0.0).count();
    target(
        "≥ 5,000 check-runs/s on 2 cores, no schedule slip (N = 5,000)",
        rate,
        format!(
            "{} runs/s; slip in {slipped} of {} runs",
            fmt_num(rate),
            slips.len()
        ),
        rate >= 5000.0 * 0.97 && slipped == 0,
    );
    for l in &token_labels {
        let v = r.med(&format!("scale.{l}.tokens_per_run"));
        let ideal = r.med(&format!("scale.{l}.ideal_tokens_per_run"));
        target(
            &format!(
                "token requests/run → 0 (cached until expiry; lifetime {})",
                l.trim_start_matches("token-")
            ),
            v,
            format!("{} (ideal {})", fmt_num(v), fmt_num(ideal)),
            v <= ideal + 0.001,
        );
    }
    if let Some((_, l)) = ns.last() {
        let v = r.med(&format!("scale.{l}.conns_per_run"));
        target(
            "new TCP connections/run → 0 (keep-alive)",
            v,
            fmt_num(v),
            v < 0.001,
        );
    }
    print!("{s}");
}

fn main() {
    // The exporter's config loader also reads these; a stray one must not change the bench.
    for (k, _) in std::env::vars() {
        let l = k.to_ascii_lowercase();
        if l.starts_with("oci__")
            || l.starts_with("registry__")
            || l.starts_with("oci_registry_exporter_")
        {
            // SAFETY: single-threaded here, before any runtime or thread starts.
            unsafe { std::env::remove_var(&k) };
        }
    }
    let argv: Vec<String> = std::env::args().collect();
    let Some(cmd) = argv.get(1) else {
        eprintln!(
            "usage: bench_driver overhead|compare|scale|render|page|startup|loop|report --key value ..."
        );
        std::process::exit(2);
    };
    let a = Args::parse(&argv[2..]);
    match cmd.as_str() {
        "overhead" => overhead(&a),
        "compare" => compare(&a),
        "scale" => scale(&a),
        "render" => render(&a),
        "startup" => startup(&a),
        "page" => page(&a),
        "loop" => run_loop(&a),
        "report" => report(&a),
        other => panic!("unknown subcommand {other}"),
    }
}
