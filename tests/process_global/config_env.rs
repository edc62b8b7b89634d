//! The environment: seed keys of doctor deployments and the exporter's own prefix.
//! figment's Jail serialises these tests and restores the environment after each; they run
//! in `tests/process_global/`, one at a time with `no_leak`, because the environment and the
//! working directory belong to the whole process.

// figment::Jail closures must return figment::Result, whose error is large by design.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use figment::Jail;
use oci_registry_exporter::config::{Config, Credentials, Mode};
use secrecy::ExposeSecret;

fn password_of(c: &Credentials) -> String {
    match c {
        Credentials::Basic {
            password: Some(p), ..
        } => p.expose().unwrap().expose_secret().to_string(),
        other => panic!("expected basic credentials, got {other:?}"),
    }
}

#[test]
fn oci_seed_keys_alone_define_the_default_registry() {
    let _process = crate::one_at_a_time();
    Jail::expect_with(|jail| {
        // Mixed case as the seeds write them: figment lower-cases without snake-casing.
        jail.set_env("OCI__RegistryUrl", "https://registry.example.com");
        jail.set_env("OCI__Username", "robot");
        jail.set_env("OCI__Password", "pw-from-env");
        jail.set_env("OCI__TestRepository", "team/base");
        jail.set_env("OCI__TestTag", "stable");
        jail.set_env("OCI__PushTestRepository", "team/doctor-test");
        jail.set_env("OCI__SomethingElse", "ignored");
        let config = Config::load(None).expect("seed keys alone are a valid config");
        assert_eq!(config.registries.len(), 1);
        let r = &config.registries[0];
        assert_eq!(r.name, "default");
        assert_eq!(r.url.as_str(), "https://registry.example.com/");
        assert_eq!(r.test_repository, "team/base");
        assert_eq!(r.test_tag, "stable");
        assert_eq!(r.push_test_repository, "team/doctor-test");
        assert_eq!(password_of(&r.credentials), "pw-from-env");
        Ok(())
    });
}

#[test]
fn registry_seed_keys_work_and_oci_wins_over_them() {
    let _process = crate::one_at_a_time();
    Jail::expect_with(|jail| {
        jail.set_env("REGISTRY__URL", "https://r.example.com");
        jail.set_env("Registry__Username", "r-user");
        jail.set_env("Registry__Password", "r-pass");
        let config = Config::load(None).unwrap();
        assert_eq!(config.registries[0].url.as_str(), "https://r.example.com/");
        assert_eq!(password_of(&config.registries[0].credentials), "r-pass");

        jail.set_env("OCI__RegistryUrl", "https://o.example.com");
        let config = Config::load(None).unwrap();
        assert_eq!(config.registries[0].url.as_str(), "https://o.example.com/");
        Ok(())
    });
}

#[test]
fn seed_token_is_a_bearer_credential() {
    let _process = crate::one_at_a_time();
    Jail::expect_with(|jail| {
        jail.set_env("Registry__Url", "https://r.example.com");
        jail.set_env("Registry__Token", "tok");
        let config = Config::load(None).unwrap();
        assert!(matches!(
            config.registries[0].credentials,
            Credentials::Bearer { .. }
        ));
        Ok(())
    });
}

#[test]
fn seed_keys_override_a_file_registry_named_default_and_add_to_others() {
    let _process = crate::one_at_a_time();
    Jail::expect_with(|jail| {
        jail.create_file(
            "config.toml",
            r#"
[[registries]]
name = "default"
url = "https://file.example.com"
test_tag = "from-file"

[[registries]]
name = "other"
url = "https://other.example.com"
"#,
        )?;
        jail.set_env("OCI__RegistryUrl", "https://env.example.com");
        let config = Config::load(Some("config.toml".as_ref())).unwrap();
        assert_eq!(config.registries.len(), 2);
        assert_eq!(
            config.registries[0].url.as_str(),
            "https://env.example.com/"
        );
        assert_eq!(config.registries[0].test_tag, "from-file");
        assert_eq!(config.registries[1].name, "other");
        Ok(())
    });
}

#[test]
fn exporter_prefix_sets_top_level_and_default_keys() {
    let _process = crate::one_at_a_time();
    Jail::expect_with(|jail| {
        jail.set_env("OCI__RegistryUrl", "https://registry.example.com");
        jail.set_env("OCI_REGISTRY_EXPORTER_MODE", "scrape");
        jail.set_env("OCI_REGISTRY_EXPORTER_MIN_INTERVAL", "45s");
        jail.set_env("OCI_REGISTRY_EXPORTER_DEFAULTS__TIMEOUT", "1m 30s");
        // A timeout may not exceed the interval (60s by default).
        jail.set_env("OCI_REGISTRY_EXPORTER_DEFAULTS__INTERVAL", "2m");
        let config = Config::load(None).unwrap();
        assert_eq!(config.mode, Mode::Scrape);
        assert_eq!(config.min_interval, Duration::from_secs(45));
        assert_eq!(config.registries[0].timeout, Duration::from_secs(90));
        assert_eq!(config.registries[0].interval, Duration::from_secs(120));
        Ok(())
    });
}

#[test]
fn no_file_and_no_seed_keys_is_a_clear_error() {
    let _process = crate::one_at_a_time();
    Jail::expect_with(|_jail| {
        let e = Config::load(None).unwrap_err().to_string();
        assert_eq!(
            e,
            "registries: no registry is configured; add a [[registries]] entry with name and url, or set OCI__RegistryUrl"
        );
        Ok(())
    });
}
