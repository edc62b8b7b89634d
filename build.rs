//! Build facts for `--version` and `oci_registry_exporter_build_info`: the source revision
//! (git, or `ORE_BUILD_REVISION` from the environment, e.g. a release pipeline
//! building from a tarball; not `OCI_REGISTRY_EXPORTER_*`, which is the configuration's
//! environment prefix and reaches every process cargo runs), the build date (`SOURCE_DATE_EPOCH` for reproducible builds,
//! else today, UTC) and the compiler's version. Anything unknown is "unknown".

use std::process::Command;

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's
/// civil_from_days), so that no date crate is needed at build time.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn main() {
    // HEAD names the branch, so a commit does not rebuild a development tree (its revision
    // may then lag); a fresh clone, CI or a release build always gets the right one. Only a
    // file that exists is named: cargo reruns a build script whose declared file is missing
    // on every command (a tarball, a Docker build context), and in a git worktree `.git` is
    // a file, HEAD elsewhere (git says where).
    println!("cargo:rerun-if-changed=build.rs");
    let head = output("git", &["rev-parse", "--git-path", "HEAD"])
        .map(std::path::PathBuf::from)
        .filter(|head| head.is_file());
    if let Some(head) = head {
        println!("cargo:rerun-if-changed={}", head.display());
    }
    println!("cargo:rerun-if-env-changed=ORE_BUILD_REVISION");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let revision = std::env::var("ORE_BUILD_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    let (y, m, d) = civil(epoch.div_euclid(86_400));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ORE_BUILD_REVISION={revision}");
    println!("cargo:rustc-env=ORE_BUILD_DATE={y:04}-{m:02}-{d:02}");
    println!("cargo:rustc-env=ORE_BUILD_RUSTC={rustc}");
}
