//! Which registry product answers, and what fixes a failure there.
//!
//! Owns one table of rules ([`RULES`]): each names a product, the evidence it reads from
//! what the registry answered (its host name, the token realm and service of a Bearer
//! challenge, the realm of a Basic one, response headers the client keeps, an OCI error
//! code), and the public report it is built from. [`recognise`] takes the first rule that
//! matches a round's answers, else `unknown`. It also owns the products' own fix steps
//! ([`fix`], in `fixes.rs`, one function per product) for the reasons that need a person
//! to act: `catalogue::diagnose` puts them in place of the generic steps.
//!
//! A recognition changes words, never a verdict: no status or reason depends on it. It
//! makes no request and reads only results (`outcome`) and the registry's URL.

use url::Url;

use crate::outcome::{CheckResult, ErrorCode, Implementation, Recognition};

mod fixes;

pub use fixes::fix;

/// What a round's answers showed about the product, gathered once for the rules.
#[derive(Debug, Default)]
pub struct Seen {
    /// The registry's host name, lower case.
    host: String,
    /// Bearer challenges: the realm's host and path, and the service.
    realms: Vec<(String, String, Option<String>)>,
    /// Basic challenges' realms.
    basic_realms: Vec<String>,
    /// Kept response headers (`client::DEBUG_HEADERS`), names lower case.
    headers: Vec<(String, String)>,
    error_codes: Vec<ErrorCode>,
}

impl Seen {
    /// The evidence in `results` (their request trails and facts) of the registry at `url`.
    pub fn of(url: &Url, results: &[CheckResult]) -> Seen {
        let mut seen = Seen {
            host: url.host_str().unwrap_or_default().to_ascii_lowercase(),
            ..Seen::default()
        };
        for r in results {
            if let Some(code) = &r.facts.error_code {
                seen.error_codes.push(code.clone());
            }
            for (name, value) in r.requests.iter().flat_map(|q| q.headers.iter()) {
                if name == "www-authenticate" {
                    seen.challenge(value);
                }
                seen.headers.push((name.clone(), value.clone()));
            }
        }
        seen
    }

    fn challenge(&mut self, value: &str) {
        let Ok(challenges) = http_auth::parse_challenges(value) else {
            return;
        };
        for c in challenges {
            let param = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            let Some(realm) = param("realm") else {
                continue;
            };
            if c.scheme.eq_ignore_ascii_case("bearer") {
                let (host, path) = match Url::parse(&realm) {
                    Ok(u) => (
                        u.host_str().unwrap_or_default().to_ascii_lowercase(),
                        u.path().to_string(),
                    ),
                    Err(_) => (String::new(), realm.clone()),
                };
                self.realms.push((host, path, param("service")));
            } else if c.scheme.eq_ignore_ascii_case("basic") {
                self.basic_realms.push(realm);
            }
        }
    }

    fn host_is(&self, names: &[&str]) -> bool {
        names.contains(&self.host.as_str())
    }

    fn host_ends(&self, suffix: &str) -> bool {
        self.host.ends_with(suffix)
    }

    fn realm_host_is(&self, host: &str) -> bool {
        self.realms.iter().any(|(h, _, _)| h == host)
    }

    fn realm_path_ends(&self, suffix: &str) -> bool {
        self.realms
            .iter()
            .any(|(_, p, _)| p.trim_end_matches('/').ends_with(suffix))
    }

    fn realm_path_has(&self, part: &str) -> bool {
        self.realms.iter().any(|(_, p, _)| p.contains(part))
    }

    fn service_is(&self, service: &str) -> bool {
        self.realms
            .iter()
            .any(|(_, _, s)| s.as_deref() == Some(service))
    }

    fn basic_realm_is(&self, realm: &str) -> bool {
        self.basic_realms
            .iter()
            .any(|r| r.eq_ignore_ascii_case(realm))
    }

    fn header(&self, name: &str) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_header(&self, name: &str) -> bool {
        self.header(name).next().is_some()
    }
}

/// One way to recognise a product.
pub struct Rule {
    pub implementation: Implementation,
    /// The evidence, in words for the doctor and the `/` page ("Harbor, from ...").
    pub evidence: &'static str,
    /// The public report or documentation the evidence comes from.
    pub source: &'static str,
    matches: fn(&Seen) -> bool,
}

/// The rules, most specific first: a product's own mark (realm path, header) before its
/// host name, and Distribution, whose mark every Distribution-based product shares, last.
pub const RULES: &[Rule] = &[
    Rule {
        implementation: Implementation::DockerHub,
        evidence: "the token realm auth.docker.io (service registry.docker.io)",
        source: "docs.docker.com/registry/spec/auth/token (the flow against auth.docker.io)",
        matches: |s| s.realm_host_is("auth.docker.io") || s.service_is("registry.docker.io"),
    },
    Rule {
        implementation: Implementation::DockerHub,
        evidence: "the host registry-1.docker.io",
        source: "docs.docker.com/docker-hub/usage (registry-1.docker.io)",
        matches: |s| s.host_is(&["registry-1.docker.io", "index.docker.io", "docker.io"]),
    },
    Rule {
        implementation: Implementation::Ghcr,
        evidence: "the token realm https://ghcr.io/token (service ghcr.io)",
        source: "renovatebot/renovate#11446 (GHCR's challenge); docs.github.com, Working with the Container registry",
        matches: |s| {
            s.realm_host_is("ghcr.io") || s.service_is("ghcr.io") || s.host_is(&["ghcr.io"])
        },
    },
    Rule {
        implementation: Implementation::EcrPublic,
        evidence: "the token realm https://public.ecr.aws/token/ (service public.ecr.aws)",
        source: "docs.aws.amazon.com/AmazonECR/latest/public/public-registry-auth.html",
        matches: |s| {
            s.realm_host_is("public.ecr.aws")
                || s.service_is("public.ecr.aws")
                || s.host_is(&["public.ecr.aws"])
        },
    },
    Rule {
        implementation: Implementation::Ecr,
        evidence: "the Basic challenge's service ecr.amazonaws.com, or a host *.dkr.ecr.<region>.amazonaws.com",
        source: "awslabs/amazon-ecr-credential-helper#7 (ECR's answers); docs.aws.amazon.com/AmazonECR/latest/userguide/Registries.html",
        matches: |s| {
            s.header("www-authenticate")
                .any(|v| v.contains("service=\"ecr.amazonaws.com\""))
                || (s.host.contains(".dkr.ecr.") && s.host_ends(".amazonaws.com"))
        },
    },
    Rule {
        implementation: Implementation::Harbor,
        evidence: "the token realm /service/token (service harbor-registry)",
        source: "goharbor/harbor src/core/service/token (the realm Harbor's core serves); goharbor/harbor#12270",
        matches: |s| s.realm_path_ends("/service/token") || s.service_is("harbor-registry"),
    },
    Rule {
        implementation: Implementation::Gitlab,
        evidence: "the token realm /jwt/auth (service container_registry)",
        source: "docs.gitlab.com/ee/administration/packages/container_registry.html (auth.token.realm https://<gitlab>/jwt/auth, service container_registry)",
        matches: |s| {
            s.realm_path_ends("/jwt/auth")
                || s.service_is("container_registry")
                || s.has_header("gitlab-container-registry-version")
        },
    },
    Rule {
        implementation: Implementation::Artifactory,
        evidence: "the X-JFrog-Version / X-Artifactory-Id headers, the realm path /artifactory/api/docker/, or the Basic realm \"Artifactory Realm\"",
        source: "jfrog.com/help, Docker Repositories (the repository path method); JFrog answers carry X-JFrog-Version",
        matches: |s| {
            s.has_header("x-jfrog-version")
                || s.has_header("x-artifactory-id")
                || s.realm_path_has("/artifactory/api/docker/")
                || s.basic_realm_is("Artifactory Realm")
                || s.host_ends(".jfrog.io")
        },
    },
    Rule {
        implementation: Implementation::Nexus,
        evidence: "the Server header Nexus/<version>, or the Basic realm \"Sonatype Nexus Repository Manager\"",
        source: "help.sonatype.com, Docker Authentication; regclient/regclient#363 (Nexus's answers)",
        matches: |s| {
            s.header("server").any(|v| v.starts_with("Nexus/"))
                || s.basic_realm_is("Sonatype Nexus Repository Manager")
        },
    },
    Rule {
        implementation: Implementation::Acr,
        evidence: "the token realm /oauth2/token on a host *.azurecr.io",
        source: "github.com/Azure/acr docs/AAD-OAuth.md (realm https://<name>.azurecr.io/oauth2/token)",
        matches: |s| {
            s.host_ends(".azurecr.io")
                || s.realms.iter().any(|(h, _, _)| h.ends_with(".azurecr.io"))
        },
    },
    Rule {
        implementation: Implementation::ArtifactRegistry,
        evidence: "a host *-docker.pkg.dev (or gcr.io) with its token realm /v2/token",
        source: "cloud.google.com/artifact-registry/docs/docker/authentication",
        matches: |s| {
            s.host_ends("-docker.pkg.dev")
                || s.host_is(&["gcr.io"])
                || s.host_ends(".gcr.io")
                || s.realms
                    .iter()
                    .any(|(h, _, _)| h.ends_with("-docker.pkg.dev"))
        },
    },
    Rule {
        implementation: Implementation::Quay,
        evidence: "the token realm /v2/auth (Quay's), or the host quay.io",
        source: "quay/quay endpoints/v2/v2auth.py (GET /v2/auth); docs.projectquay.io",
        matches: |s| s.realm_path_ends("/v2/auth") || s.host_is(&["quay.io"]),
    },
    Rule {
        implementation: Implementation::Zot,
        evidence: "the Basic realm \"zot\"",
        source: "zotregistry.dev/latest/admin-guide/admin-configuration (http.realm \"zot\")",
        matches: |s| s.basic_realm_is("zot"),
    },
    Rule {
        implementation: Implementation::Harbor,
        evidence: "the OCI error code NOT_FOUND, which Harbor spells so",
        source: "goharbor/harbor src/lib/errors/const.go (NotFoundCode = \"NOT_FOUND\")",
        matches: |s| {
            s.error_codes
                .iter()
                .any(|c| *c == ErrorCode::Other("NOT_FOUND".into()))
        },
    },
    Rule {
        implementation: Implementation::Distribution,
        evidence: "Docker-Distribution-API-Version: registry/2.0 and no other product's mark",
        source: "distribution/distribution registry/handlers/app.go (the header on every /v2/ answer); shared/reference/distribution-2.8-facts.md",
        matches: |s| {
            s.header("docker-distribution-api-version")
                .any(|v| v.trim() == "registry/2.0")
        },
    },
];

/// The product of the registry at `url`, from a round's results: the first rule of
/// [`RULES`] that matches, else `unknown`.
pub fn recognise(url: &Url, results: &[CheckResult]) -> Recognition {
    let seen = Seen::of(url, results);
    RULES
        .iter()
        .find(|r| (r.matches)(&seen))
        .map(|r| Recognition {
            implementation: r.implementation,
            evidence: r.evidence,
        })
        .unwrap_or(Recognition {
            implementation: Implementation::Unknown,
            evidence: "no rule matched",
        })
}

/// The product's name as its users know it.
pub fn title(implementation: Implementation) -> &'static str {
    use Implementation as I;
    match implementation {
        I::Distribution => "CNCF Distribution",
        I::DockerHub => "Docker Hub",
        I::Ghcr => "GitHub Container Registry",
        I::Harbor => "Harbor",
        I::Quay => "Quay",
        I::Gitlab => "GitLab container registry",
        I::Ecr => "Amazon ECR",
        I::EcrPublic => "Amazon ECR Public",
        I::ArtifactRegistry => "Google Artifact Registry",
        I::Acr => "Azure Container Registry",
        I::Artifactory => "JFrog Artifactory",
        I::Nexus => "Sonatype Nexus",
        I::Zot => "Zot",
        I::Unknown => "unknown",
    }
}

/// "Harbor, from the token realm /service/token", or "unknown (no rule matched)".
pub fn describe(r: &Recognition) -> String {
    match r.implementation {
        Implementation::Unknown => "unknown (no rule matched)".to_string(),
        i => format!("{}, from {}", title(i), r.evidence),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{AuthUsed, CheckKind, Reason, RequestRecord, Status};

    /// A result whose trail holds one answer with these headers.
    fn answered(headers: &[(&str, &str)]) -> CheckResult {
        let mut r = CheckResult::new(CheckKind::Registry, Status::Pass, Reason::Ok, "x");
        r.requests.push(RequestRecord {
            method: "GET".into(),
            path: "/v2/".into(),
            status: Some(401),
            duration: std::time::Duration::ZERO,
            auth: AuthUsed::None,
            note: None,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        });
        r
    }

    fn seen(url: &str, headers: &[(&str, &str)]) -> Implementation {
        recognise(&Url::parse(url).unwrap(), &[answered(headers)]).implementation
    }

    const DDAV: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

    // Each case is an answer as public reports show it; the URL is a made-up host where
    // the product runs self-hosted, so the host name alone cannot decide.
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        Implementation,
    );

    /// One answer per product, as public reports show it.
    fn cases() -> &'static [Case] {
        &[
            // shared/reference/distribution-2.8-facts.md §1: DDAV and the configured realm.
            (
                "http://127.0.0.1:5002",
                &[
                    DDAV,
                    ("www-authenticate", "Basic realm=\"regharness-basic\""),
                ],
                Implementation::Distribution,
            ),
            // docs.docker.com/registry/spec/auth/token: the challenge of registry-1.docker.io.
            (
                "https://mirror.example.com",
                &[
                    DDAV,
                    (
                        "www-authenticate",
                        "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\"",
                    ),
                ],
                Implementation::DockerHub,
            ),
            // renovatebot/renovate#11446: GHCR's challenge.
            (
                "https://ghcr.io",
                &[(
                    "www-authenticate",
                    "Bearer realm=\"https://ghcr.io/token\",service=\"ghcr.io\",scope=\"repository:user/image:pull\"",
                )],
                Implementation::Ghcr,
            ),
            // goharbor/harbor#12270 (and Harbor's core token service): /service/token.
            (
                "https://registry.corp.example.com",
                &[
                    DDAV,
                    (
                        "www-authenticate",
                        "Bearer realm=\"https://registry.corp.example.com/service/token\",service=\"harbor-registry\"",
                    ),
                ],
                Implementation::Harbor,
            ),
            // quay/quay endpoints/v2/v2auth.py: realm /v2/auth, service the host name.
            (
                "https://images.corp.example.com",
                &[(
                    "www-authenticate",
                    "Bearer realm=\"https://images.corp.example.com/v2/auth\",service=\"images.corp.example.com\"",
                )],
                Implementation::Quay,
            ),
            // docs.gitlab.com container_registry.md: realm /jwt/auth, service container_registry.
            (
                "https://registry.gitlab.corp.example.com",
                &[
                    DDAV,
                    (
                        "www-authenticate",
                        "Bearer realm=\"https://gitlab.corp.example.com/jwt/auth\",service=\"container_registry\"",
                    ),
                ],
                Implementation::Gitlab,
            ),
            // awslabs/amazon-ecr-credential-helper#7: ECR's Basic challenge.
            (
                "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                &[(
                    "www-authenticate",
                    "Basic realm=\"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/\",service=\"ecr.amazonaws.com\"",
                )],
                Implementation::Ecr,
            ),
            // AWS docs, public-registry-auth: the token realm of public.ecr.aws.
            (
                "https://public.ecr.aws",
                &[(
                    "www-authenticate",
                    "Bearer realm=\"https://public.ecr.aws/token/\",service=\"public.ecr.aws\",scope=\"aws\"",
                )],
                Implementation::EcrPublic,
            ),
            // cloud.google.com artifact-registry docker authentication: *-docker.pkg.dev.
            (
                "https://europe-west1-docker.pkg.dev",
                &[(
                    "www-authenticate",
                    "Bearer realm=\"https://europe-west1-docker.pkg.dev/v2/token\",service=\"europe-west1-docker.pkg.dev\"",
                )],
                Implementation::ArtifactRegistry,
            ),
            // Azure/acr docs/AAD-OAuth.md: realm /oauth2/token on <name>.azurecr.io.
            (
                "https://contoso.azurecr.io",
                &[(
                    "www-authenticate",
                    "Bearer realm=\"https://contoso.azurecr.io/oauth2/token\",service=\"contoso.azurecr.io\"",
                )],
                Implementation::Acr,
            ),
            // JFrog: X-JFrog-Version on every answer, "Artifactory Realm" (tests/suite/verdicts/vendors.rs).
            (
                "https://artifacts.corp.example.com/artifactory/api/docker/docker-local",
                &[
                    ("x-jfrog-version", "Artifactory/7.77.5 77705900"),
                    ("www-authenticate", "Basic realm=\"Artifactory Realm\""),
                ],
                Implementation::Artifactory,
            ),
            // help.sonatype.com Docker Authentication; regclient/regclient#363 (Nexus's Server header).
            (
                "https://nexus.corp.example.com:8443",
                &[
                    DDAV,
                    ("server", "Nexus/3.61.0-02 (OSS)"),
                    (
                        "www-authenticate",
                        "BASIC realm=\"Sonatype Nexus Repository Manager\"",
                    ),
                ],
                Implementation::Nexus,
            ),
            // zotregistry.dev admin configuration: http.realm "zot".
            (
                "https://zot.corp.example.com",
                &[DDAV, ("www-authenticate", "Basic realm=\"zot\"")],
                Implementation::Zot,
            ),
        ]
    }

    /// The product of the case for `want`.
    fn recognised(want: Implementation) -> Implementation {
        let (url, headers, _) = cases()
            .iter()
            .find(|(_, _, i)| *i == want)
            .unwrap_or_else(|| panic!("{want:?} has no case"));
        seen(url, headers)
    }

    macro_rules! each_recognised {
        ($($name:ident => $product:ident,)+) => {$(
            #[test]
            fn $name() {
                assert_eq!(recognised(Implementation::$product), Implementation::$product);
            }
        )+};
    }

    each_recognised! {
        distribution_is_recognised => Distribution,
        docker_hub_is_recognised => DockerHub,
        ghcr_is_recognised => Ghcr,
        harbor_is_recognised => Harbor,
        quay_is_recognised => Quay,
        gitlab_is_recognised => Gitlab,
        ecr_is_recognised => Ecr,
        ecr_public_is_recognised => EcrPublic,
        artifact_registry_is_recognised => ArtifactRegistry,
        acr_is_recognised => Acr,
        artifactory_is_recognised => Artifactory,
        nexus_is_recognised => Nexus,
        zot_is_recognised => Zot,
    }

    #[test]
    fn every_product_has_a_case_and_only_its_own_rule_matches_it() {
        for &i in Implementation::ALL {
            if i != Implementation::Unknown {
                assert_eq!(recognised(i), i);
            }
        }
        assert_eq!(cases().len(), Implementation::ALL.len() - 1);
    }

    #[test]
    fn an_unknown_registry_stays_unknown() {
        // A server with no product's mark: no DDAV, a realm of its own.
        assert_eq!(
            seen(
                "https://registry.corp.example.com",
                &[(
                    "www-authenticate",
                    "Bearer realm=\"https://sso.corp.example.com/oauth/token\",service=\"corp\"",
                )]
            ),
            Implementation::Unknown
        );
        assert_eq!(seen("http://127.0.0.1:5000", &[]), Implementation::Unknown);
        // A redacted challenge says nothing.
        assert_eq!(
            seen(
                "http://127.0.0.1:5000",
                &[("www-authenticate", "[redacted]")]
            ),
            Implementation::Unknown
        );
    }

    #[test]
    fn products_have_their_own_fixes_and_unknown_keeps_the_generic_ones() {
        let harbor = fix(Implementation::Harbor, CheckKind::Pull, Reason::Forbidden).unwrap();
        assert!(harbor.join(" ").contains("Pull Repository"), "{harbor:?}");
        let gitlab = fix(Implementation::Gitlab, CheckKind::Push, Reason::Forbidden).unwrap();
        assert!(gitlab.join(" ").contains("Developer"), "{gitlab:?}");
        let gitlab = fix(Implementation::Gitlab, CheckKind::Pull, Reason::Forbidden).unwrap();
        assert!(gitlab.join(" ").contains("Reporter"), "{gitlab:?}");
        let ecr = fix(Implementation::Ecr, CheckKind::Push, Reason::Forbidden).unwrap();
        assert!(ecr.join(" ").contains("ecr:InitiateLayerUpload"), "{ecr:?}");
        let ecr = fix(
            Implementation::Ecr,
            CheckKind::Pull,
            Reason::CredentialsExpired,
        )
        .unwrap();
        assert!(ecr.join(" ").contains("ecr-login"), "{ecr:?}");
        let ghcr = fix(
            Implementation::Ghcr,
            CheckKind::Pull,
            Reason::InvalidCredentials,
        )
        .unwrap();
        assert!(ghcr.join(" ").contains("read:packages"), "{ghcr:?}");
        let ar = fix(
            Implementation::ArtifactRegistry,
            CheckKind::Pull,
            Reason::Forbidden,
        )
        .unwrap();
        assert!(
            ar.join(" ").contains("roles/artifactregistry.reader"),
            "{ar:?}"
        );
        let acr = fix(Implementation::Acr, CheckKind::Push, Reason::Forbidden).unwrap();
        assert!(acr.join(" ").contains("AcrPush"), "{acr:?}");
        let hub = fix(
            Implementation::DockerHub,
            CheckKind::Pull,
            Reason::RateLimited,
        )
        .unwrap();
        assert!(hub.join(" ").contains("6 hours"), "{hub:?}");
        // Login steps say what to configure, for a registry without credentials as for one
        // whose credentials were refused: never just "check the password".
        for &i in Implementation::ALL {
            if let Some(steps) = fix(i, CheckKind::Pull, Reason::Unauthorized) {
                assert!(
                    steps[0].contains("username") || steps[0].contains("docker_config"),
                    "{i:?}: {steps:?}"
                );
            }
        }
        // Every product's steps end with a link to its documentation.
        for &i in Implementation::ALL {
            for &reason in Reason::ALL {
                for &check in CheckKind::ALL {
                    if let Some(steps) = fix(i, check, reason) {
                        assert!(
                            steps
                                .last()
                                .is_some_and(|s| s.starts_with("docs: https://")),
                            "{i:?} {reason:?}: {steps:?}"
                        );
                    }
                }
            }
            assert_eq!(
                fix(Implementation::Unknown, CheckKind::Pull, Reason::Forbidden),
                None
            );
            // Reasons no person fixes keep the generic words.
            assert_eq!(fix(i, CheckKind::Pull, Reason::Timeout), None);
        }
    }
}
