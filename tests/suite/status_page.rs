//! The `/` status page against a real Distribution registry (htpasswd): trouble first (one
//! row per registry, its checks as badges, worst first), the summary, the likely cause and
//! fix of a failing check, repeats collapsed in the recent results, names from the
//! configuration escaped, and every text/background pair legible (≥ 4.5:1) in a real
//! browser (Debian's headless `chromium`; scripts/test installs it), with a screenshot kept
//! under target/ for a person to look at.

use crate::common;
use crate::support;

use std::time::Duration;

use common::Exporter;
use oci_registry_exporter::Config;
use support::{BASIC_PASSWORD, BASIC_USER, Kind, TestRegistry};

/// A registry name that would be markup if the page did not escape it.
const HOSTILE: &str = "<script>alert(\"x\")</script> & co";

fn config_text(url: &str, warned_url: &str, bad_password: &str) -> String {
    format!(
        r#"
[defaults]
interval = "1s"
timeout = "1s"

[[registries]]
name = "good"
url = "{url}"
username = "{BASIC_USER}"
password = "{BASIC_PASSWORD}"
checks = ["registry", "pull"]

# A gateway in front of a registry whose back end is down answers 502 at /v2/: a warning
# (reason server_error). A 404 there would be a failure (not the registry API).
[[registries]]
name = "warned"
url = "{warned_url}"
checks = ["registry"]

[[registries]]
name = "bad"
url = "{url}"
username = "{BASIC_USER}"
password = "{bad_password}"
checks = ["registry", "credentials", "pull"]

[[registries]]
name = '{HOSTILE}'
url = "{url}"
checks = ["registry"]
"#
    )
}

/// The text of the element that starts at `open` (its tags stripped).
fn element_text(page: &str, open: &str) -> String {
    let start = page
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in\n{page}"))
        + open.len();
    let inner = &page[start..];
    let end = inner.find("</p>").expect("the element ends");
    let mut text = String::new();
    let mut in_tag = false;
    for c in inner[..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

/// The two tables: latest results, recent results.
fn sections(page: &str) -> (&str, &str) {
    page.split_once("<h2>Recent results</h2>")
        .unwrap_or_else(|| panic!("no Recent results section:\n{page}"))
}

/// The rows (`<tr ...>...</tr>`) of a section that contain every one of `needles`.
fn rows<'a>(section: &'a str, needles: &[&str]) -> Vec<&'a str> {
    section
        .split("<tr")
        .skip(1)
        .filter(|row| needles.iter().all(|n| row.contains(n)))
        .collect()
}

/// The `N` of `×N over ...` in a recent-results row, or 1 when the row has no repeats.
fn repeats(row: &str) -> usize {
    match row.split_once('×') {
        Some((_, rest)) => rest
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count after ×: {row}")),
        None => 1,
    }
}

/// A gateway whose registry back end is down: 502 at `/v2/` (emulated: a real Distribution
/// answers for itself, never 502).
async fn bad_gateway() -> mockito::ServerGuard {
    let mut server = mockito::Server::new_async().await;
    server
        .mock("GET", "/v2/")
        .with_status(502)
        .with_header("content-type", "text/html")
        .with_body("<html><body><h1>502 Bad Gateway</h1></body></html>")
        .expect_at_least(1)
        .create_async()
        .await;
    server
}

async fn get_page(exporter: &Exporter) -> String {
    let (code, ct, page) = exporter.get_with("/", &[]).await;
    assert_eq!(code, 200);
    assert_eq!(ct, "text/html; charset=utf-8");
    page
}

#[tokio::test]
async fn status_page_leads_with_trouble_and_explains_it() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let gateway = bad_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        config_text(&reg.url, &gateway.url(), "stale-password"),
    )
    .unwrap();
    let exporter = Exporter::start(Config::load(Some(&path)).unwrap()).await;
    exporter.wait_ready().await;
    // About three rounds at a 1 s interval, so every series has repeats to collapse.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let page = get_page(&exporter).await;

    assert_eq!(
        element_text(&page, "<p id=\"summary\">"),
        "4 registries: 1 failing, 1 warning, 2 ok",
        "{page}"
    );
    assert!(
        page.contains("<title>1 failing, 1 warning · OCI registry exporter</title>"),
        "{page}"
    );
    assert!(
        page.contains(concat!(
            "<small>",
            env!("CARGO_PKG_VERSION"),
            " · revision "
        )),
        "the header names the version:\n{page}"
    );

    let (latest, recent) = sections(&page);
    // One row per registry: "good" is configured first and passes, so it comes after the
    // failing and the warning registry.
    let at = |name: &str| {
        latest
            .find(&format!("debug=true\">{name}</a>"))
            .unwrap_or_else(|| panic!("no row of {name}:\n{latest}"))
    };
    assert!(at("bad") < at("warned"), "{latest}");
    assert!(at("warned") < at("good"), "{latest}");
    let registry_rows = rows(latest, &["<td>"]);
    assert_eq!(registry_rows.len(), 4, "one row per registry:\n{latest}");
    let bad = registry_rows[0];
    assert!(
        bad.starts_with(" class=\"reg fail\"><td><span class=\"b fail\">failing</span>")
            && bad.contains("debug=true\">bad</a>"),
        "the first row is the failing registry, with its state as a badge: {bad}"
    );
    // Its checks as badges, worst first.
    let badges: Vec<&str> = bad
        .split("<span class=\"b ")
        .skip(2)
        .map(|b| b.split_once('>').unwrap().1.split('<').next().unwrap())
        .collect();
    assert_eq!(
        badges,
        ["credentials: fail", "pull: fail", "registry: pass"],
        "{bad}"
    );

    // The failing root shows its likely cause, fix steps and runbook, and comes before the
    // check it explains, which points at it instead of repeating the advice.
    let (credentials, pull) = {
        let c = bad
            .find("<div class=\"d fail\"><b>credentials</b>")
            .unwrap_or_else(|| panic!("no credentials details: {bad}"));
        let p = bad
            .find("<div class=\"d fail\"><b>pull</b>")
            .unwrap_or_else(|| panic!("no pull details: {bad}"));
        assert!(c < p, "the root cause comes first: {bad}");
        (&bad[c..p], &bad[p..])
    };
    assert!(
        credentials.contains("<b>credentials</b> fail, invalid_credentials, HTTP 401: "),
        "{credentials}"
    );
    assert!(
        credentials.contains("<div class=\"why\">likely cause: credentials rejected"),
        "{credentials}"
    );
    assert!(
        credentials.contains("<ol class=\"fix\"><li>"),
        "{credentials}"
    );
    assert!(
        credentials.contains("credentials.md#invalid_credentials\">runbook</a>"),
        "{credentials}"
    );
    assert!(!bad.contains("stale-password"), "{bad}");
    assert!(
        pull.contains("follows from this registry's <b>credentials</b> failure")
            && !pull.contains("likely cause"),
        "{pull}"
    );
    assert!(
        !bad.contains("<b>registry</b>"),
        "a pass has no details: {bad}"
    );

    let warned = rows(latest, &["debug=true\">warned</a>"])[0];
    assert!(
        warned.starts_with(" class=\"reg warn\"><td><span class=\"b warn\">warning</span>")
            && warned.contains("<b>registry</b> warn, server_error, HTTP 502")
            && warned.contains("<div class=\"why\">likely cause: "),
        "{warned}"
    );
    let good = rows(latest, &["debug=true\">good</a>"])[0];
    assert!(
        good.starts_with(" class=\"reg ok\"><td><span class=\"b pass\">ok</span>")
            && good.contains(">registry: pass</span>")
            && good.contains(">pull: pass</span>")
            && !good.contains("class=\"d ")
            && !good.contains("likely cause"),
        "{good}"
    );
    // Relative, with the absolute time in the title.
    assert!(
        good.contains("\" title=\"20")
            && (good.contains(" s ago</time>") || good.contains(">just now</time>")),
        "{good}"
    );
    assert!(
        latest.contains("<a href=\"/probe?target=good&amp;debug=true\">good</a>"),
        "{latest}"
    );

    // Escaped wherever it appears: in text and in the link (form-encoded).
    assert!(!page.contains("<script"), "{page}");
    let escaped = "&lt;script&gt;alert(\"x\")&lt;/script&gt; &amp; co";
    assert!(
        latest.contains(&format!(
            "<a href=\"/probe?target=%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E+%26+co&amp;debug=true\">{escaped}</a>"
        )),
        "{latest}"
    );
    assert!(recent.contains(&format!("<td>{escaped}</td>")), "{recent}");

    // Repeats collapse: each series ran about three times and is one row.
    for (registry, check) in [
        ("good", "pull"),
        ("bad", "credentials"),
        ("warned", "registry"),
    ] {
        let runs = rows(recent, &[&format!("<td>{registry}</td><td>{check}</td>")]);
        assert_eq!(runs.len(), 1, "{registry} × {check}:\n{recent}");
        assert!(repeats(runs[0]) >= 2, "{}", runs[0]);
        assert!(runs[0].contains("title=\"from 20"), "{}", runs[0]);
    }

    // Fix the password: the failing run and the passing one after it are two rows, the
    // passing one first, and the summary has no failure left.
    std::fs::write(&path, config_text(&reg.url, &gateway.url(), BASIC_PASSWORD)).unwrap();
    assert_eq!(exporter.post("/-/reload").await.0, 200);
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let page = get_page(&exporter).await;
    assert_eq!(
        element_text(&page, "<p id=\"summary\">"),
        "4 registries: 0 failing, 1 warning, 3 ok",
        "{page}"
    );
    let (_, recent) = sections(&page);
    let runs = rows(recent, &["<td>bad</td><td>credentials</td>"]);
    assert_eq!(runs.len(), 2, "{recent}");
    assert!(
        runs[0].starts_with(" class=\"pass\"") && runs[1].starts_with(" class=\"fail\""),
        "{runs:?}"
    );
    assert!(repeats(runs[1]) >= 2, "{}", runs[1]);
    exporter.stop().await;
}

/// Measures, in the browser, the contrast of every element that holds text against the
/// background it is drawn on (its own or the nearest ancestor's, white at the root), and
/// writes the measurements as JSON into `<pre id="contrast-report">`. The WCAG formula:
/// relative luminance of sRGB, (L1 + 0.05) / (L2 + 0.05).
const CONTRAST_SCRIPT: &str = r#"<script>
(function () {
  function parse(c) {
    var m = /rgba?\(([^)]+)\)/.exec(c);
    if (!m) return null;
    var p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  }
  function over(top, bottom) {
    var a = top.a;
    return { r: top.r * a + bottom.r * (1 - a), g: top.g * a + bottom.g * (1 - a),
             b: top.b * a + bottom.b * (1 - a), a: 1 };
  }
  function lin(v) { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }
  function lum(c) { return 0.2126 * lin(c.r) + 0.7152 * lin(c.g) + 0.0722 * lin(c.b); }
  function background(el) {
    var layers = [];
    for (var e = el; e && e.nodeType === 1; e = e.parentElement) {
      var c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    var base = { r: 255, g: 255, b: 255, a: 1 };
    for (var i = layers.length - 1; i >= 0; i--) base = over(layers[i], base);
    return base;
  }
  function hex(c) {
    return '#' + [c.r, c.g, c.b].map(function (v) {
      return ('0' + Math.round(v).toString(16)).slice(-2);
    }).join('');
  }
  function role(el) {
    if (el.closest('#summary')) return 'summary';
    if (el.closest('a')) return 'link';
    if (el.closest('.b')) return 'badge';
    if (el.closest('.msg')) return 'message';
    if (el.closest('.fix')) return 'fix';
    if (el.closest('.why')) return 'cause';
    return 'text';
  }
  var out = [];
  document.querySelectorAll('body *').forEach(function (el) {
    if (el.tagName === 'STYLE' || el.tagName === 'SCRIPT') return;
    var text = '';
    el.childNodes.forEach(function (n) { if (n.nodeType === 3) text += n.textContent; });
    text = text.trim();
    if (!text) return;
    var bg = background(el);
    var fg = over(parse(getComputedStyle(el).color), bg);
    var a = lum(fg), b = lum(bg);
    out.push({ role: role(el), text: text.slice(0, 50), fg: hex(fg), bg: hex(bg),
               ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05) });
  });
  var pre = document.createElement('pre');
  pre.id = 'contrast-report';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"#;

/// Debian's `chromium` (or `CHROMIUM`), headless, with its own profile directory.
fn chromium(profile: &std::path::Path) -> std::process::Command {
    let bin = std::env::var_os("CHROMIUM").unwrap_or_else(|| "chromium".into());
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        "--virtual-time-budget=3000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// Issue 23 §1: the page with failing, warning and ok registries, rendered by a real
/// browser: every text/background pair — summary, message, likely cause, fix steps,
/// links, badges and the rest — is at least 4.5:1 (WCAG AA). The screenshot is kept at
/// target/tmp/status-page.png for a person to look at.
#[tokio::test]
async fn every_text_on_the_page_is_legible_in_a_browser() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let gateway = bad_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        config_text(&reg.url, &gateway.url(), "stale-password"),
    )
    .unwrap();
    let exporter = Exporter::start(Config::load(Some(&path)).unwrap()).await;
    exporter.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let page = get_page(&exporter).await;
    assert!(
        page.contains("1 failing") && page.contains("1 warning"),
        "the page needs a failing and a warning registry:\n{page}"
    );

    let out_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(out_dir).unwrap();
    let screenshot = out_dir.join("status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let profile = tempfile::tempdir().unwrap();
    let url = exporter.url("/");
    let shot = tokio::task::spawn_blocking({
        let screenshot = screenshot.clone();
        let profile = profile.path().to_path_buf();
        move || {
            chromium(&profile)
                .arg(format!("--screenshot={}", screenshot.display()))
                .arg("--window-size=1280,1000")
                .arg(url)
                .output()
        }
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cannot run chromium: {e}; scripts/test installs it"));
    assert!(
        screenshot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&shot.stderr)
    );

    // The same page with the measuring script at the end of its body.
    let measured = dir.path().join("page.html");
    std::fs::write(
        &measured,
        page.replace("</body>", &format!("{CONTRAST_SCRIPT}</body>")),
    )
    .unwrap();
    let dump = tokio::task::spawn_blocking({
        let profile = profile.path().to_path_buf();
        move || {
            chromium(&profile)
                .arg("--dump-dom")
                .arg(format!("file://{}", measured.display()))
                .output()
        }
    })
    .await
    .unwrap()
    .unwrap();
    let dom = String::from_utf8_lossy(&dump.stdout);
    let report = dom
        .split_once("<pre id=\"contrast-report\">")
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(json, _)| html_escape::decode_html_entities(json).into_owned())
        .unwrap_or_else(|| {
            panic!(
                "no contrast report in the DOM:\n{dom}\n{}",
                String::from_utf8_lossy(&dump.stderr)
            )
        });
    let pairs: Vec<serde_json::Value> = serde_json::from_str(&report).unwrap();
    let mut worst: std::collections::BTreeMap<String, (f64, String)> = Default::default();
    let mut illegible = Vec::new();
    for p in &pairs {
        let role = p["role"].as_str().unwrap().to_string();
        let ratio = p["ratio"].as_f64().unwrap();
        let what = format!("{ratio:.2}:1 {} on {} {:?}", p["fg"], p["bg"], p["text"]);
        if ratio < 4.5 {
            illegible.push(format!("{role}: {what}"));
        }
        let entry = worst.entry(role).or_insert((f64::MAX, String::new()));
        if ratio < entry.0 {
            *entry = (ratio, what);
        }
    }
    for (role, (_, what)) in &worst {
        println!("lowest contrast of {role}: {what}");
    }
    println!("screenshot: {}", screenshot.display());
    for role in ["summary", "message", "cause", "fix", "link", "badge"] {
        assert!(
            worst.contains_key(role),
            "no {role} text measured: {report}"
        );
    }
    assert!(
        illegible.is_empty(),
        "text below 4.5:1 (screenshot {}):\n{}",
        screenshot.display(),
        illegible.join("\n")
    );
    exporter.stop().await;
}
