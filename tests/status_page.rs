//! The `/` status page against a real Distribution registry (htpasswd): trouble first, the
//! summary, the likely cause and fix of a failing row, repeats collapsed in the recent
//! results, and names from the configuration escaped.

mod common;
mod support;

use std::time::Duration;

use common::Exporter;
use oci_registry_exporter::Config;
use support::{BASIC_PASSWORD, BASIC_USER, Kind, TestRegistry};

/// A registry name that would be markup if the page did not escape it.
const HOSTILE: &str = "<script>alert(\"x\")</script> & co";

fn config_text(url: &str, bad_password: &str) -> String {
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

[[registries]]
name = "warned"
url = "{url}"
username = "{BASIC_USER}"
password = "{BASIC_PASSWORD}"
checks = ["referrers"]

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

async fn get_page(exporter: &Exporter) -> String {
    let (code, ct, page) = exporter.get_with("/", &[]).await;
    assert_eq!(code, 200);
    assert_eq!(ct, "text/html; charset=utf-8");
    page
}

#[tokio::test]
async fn status_page_leads_with_trouble_and_explains_it() {
    let reg = TestRegistry::start(Kind::Basic).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config_text(&reg.url, "stale-password")).unwrap();
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
    // "good" is configured first and passes: its rows come after the failing and the
    // warning registry's.
    let at = |name: &str| {
        latest
            .find(&format!("debug=true\">{name}</a>"))
            .unwrap_or_else(|| panic!("no row of {name}:\n{latest}"))
    };
    assert!(at("bad") < at("warned"), "{latest}");
    assert!(at("warned") < at("good"), "{latest}");
    let first = rows(latest, &["<td>"])[0];
    assert!(
        first.starts_with(" class=\"fail\"") && first.contains("debug=true\">bad</a>"),
        "the first row is a failure: {first}"
    );

    // The failing root shows its likely cause, fix steps and runbook; the check it explains
    // points at it instead of repeating the advice.
    let credentials = rows(latest, &["debug=true\">bad</a>", "<td>credentials</td>"]);
    assert_eq!(credentials.len(), 1, "{latest}");
    let credentials = credentials[0];
    assert!(
        credentials.contains("<span class=\"s fail\">fail</span></td><td>invalid_credentials</td>"),
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
    assert!(!credentials.contains("stale-password"), "{credentials}");
    let pull = rows(latest, &["debug=true\">bad</a>", "<td>pull</td>"])[0];
    assert!(
        pull.contains("follows from this registry's <b>credentials</b> failure")
            && !pull.contains("likely cause"),
        "{pull}"
    );
    let warned = rows(latest, &["debug=true\">warned</a>"])[0];
    assert!(
        warned.starts_with(" class=\"warn\"")
            && warned.contains("likely cause: the registry has no OCI referrers API"),
        "{warned}"
    );
    for row in rows(latest, &["debug=true\">good</a>"]) {
        assert!(
            row.starts_with(" class=\"pass\"") && !row.contains("likely cause"),
            "{row}"
        );
        // Relative, with the absolute time in the title.
        assert!(
            row.contains("\" title=\"20")
                && (row.contains(" s ago</time>") || row.contains(">just now</time>")),
            "{row}"
        );
    }
    assert!(
        latest.contains("<a href=\"/probe?target=good&amp;debug=true\">good</a>"),
        "{latest}"
    );

    // Escaped wherever it appears: in text, in the link (form-encoded), and the registry's
    // own `<digest>` in the referrers message.
    assert!(!page.contains("<script"), "{page}");
    let escaped = "&lt;script&gt;alert(\"x\")&lt;/script&gt; &amp; co";
    assert!(
        latest.contains(&format!(
            "<a href=\"/probe?target=%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E+%26+co&amp;debug=true\">{escaped}</a>"
        )),
        "{latest}"
    );
    assert!(recent.contains(&format!("<td>{escaped}</td>")), "{recent}");
    assert!(warned.contains("/referrers/&lt;digest&gt;"), "{warned}");

    // Repeats collapse: each series ran about three times and is one row.
    for (registry, check) in [
        ("good", "pull"),
        ("bad", "credentials"),
        ("warned", "referrers"),
    ] {
        let runs = rows(recent, &[&format!("<td>{registry}</td><td>{check}</td>")]);
        assert_eq!(runs.len(), 1, "{registry} × {check}:\n{recent}");
        assert!(repeats(runs[0]) >= 2, "{}", runs[0]);
        assert!(runs[0].contains("title=\"from 20"), "{}", runs[0]);
    }

    // Fix the password: the failing run and the passing one after it are two rows, the
    // passing one first, and the summary has no failure left.
    std::fs::write(&path, config_text(&reg.url, BASIC_PASSWORD)).unwrap();
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
