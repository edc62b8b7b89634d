//! Which registry product answers, and what fixes a failure there.
//!
//! Owns one table of rules ([`RULES`]): each names a product, the evidence it reads from
//! what the registry answered (its host name, the token realm and service of a Bearer
//! challenge, the realm of a Basic one, response headers the client keeps, an OCI error
//! code), and the public report it is built from. [`recognise`] takes the first rule that
//! matches a round's answers, else `unknown`. It also owns the products' own fix steps
//! ([`fix`]) for the reasons that need a person to act: `catalogue::diagnose` puts them in
//! place of the generic steps.
//!
//! A recognition changes words, never a verdict: no status or reason depends on it. It
//! makes no request and reads only results (`outcome`) and the registry's URL.

use url::Url;

use crate::outcome::{CheckKind, CheckResult, ErrorCode, Implementation, Reason, Recognition};

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

/// What kind of act a reason asks of a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topic {
    /// The credentials: none, wrong, expired.
    Login,
    /// The account's permission on a repository, or the repository itself.
    Access,
    /// Requests are limited.
    Limits,
    /// Blobs come from another host.
    Storage,
}

fn topic(reason: Reason) -> Option<Topic> {
    match reason {
        Reason::Unauthorized | Reason::InvalidCredentials | Reason::CredentialsExpired => {
            Some(Topic::Login)
        }
        Reason::Forbidden | Reason::RepositoryNotFound | Reason::ReadOnly => Some(Topic::Access),
        Reason::RateLimited => Some(Topic::Limits),
        Reason::BlobUnreachable => Some(Topic::Storage),
        _ => None,
    }
}

/// The product's own fix steps for `reason` (the last step links its documentation), or
/// `None` to keep the generic ones: for an unknown product, a reason no person fixes, or
/// one the product has nothing specific for.
pub fn fix(
    implementation: Implementation,
    check: CheckKind,
    reason: Reason,
) -> Option<&'static [&'static str]> {
    use Implementation as I;
    use Topic as T;
    let writes = matches!(check, CheckKind::Push | CheckKind::Capabilities);
    Some(match (implementation, topic(reason)?) {
        (I::Unknown, _) => return None,
        // The generic steps (docker login, password_file) are Distribution's own words.
        (I::Distribution, T::Login) => return None,
        (I::Distribution, T::Access) if reason == Reason::ReadOnly => &[
            "turn maintenance mode off when it is over: storage.maintenance.readonly.enabled: false, then restart the registry",
            "docs: https://distribution.github.io/distribution/about/configuration/#maintenance",
        ],
        (I::Distribution, T::Access) => &[
            "Distribution itself has no per-repository permissions: the token service (auth.token.realm) grants the actions; give the account pull (and push for the push test repository) there",
            "docs: https://distribution.github.io/distribution/spec/auth/token/",
        ],
        (I::Distribution, T::Limits) => return None,
        (I::Distribution, T::Storage) => &[
            "with S3, GCS or Azure storage Distribution redirects blob downloads to the bucket: allow the bucket's host in the firewall and proxy, or set storage.redirect.disable: true to serve blobs through the registry",
            "docs: https://distribution.github.io/distribution/about/configuration/#redirect",
        ],
        (I::DockerHub, T::Login) => &[
            "set username to the Docker ID and password_file to a personal access token (Account settings > Personal access tokens) with Read-only scope; an expired or deleted token is refused",
            "docs: https://docs.docker.com/security/for-developers/access-tokens/",
        ],
        (I::DockerHub, T::Access) => &[
            "the access token needs Read (pull) or Read & Write (push) scope, and the account membership in the organization's team with access to the repository",
            "docs: https://docs.docker.com/security/for-developers/access-tokens/",
        ],
        (I::DockerHub, T::Limits) => &[
            "Docker Hub limits pulls per 6 hours: anonymous by IP, authenticated per account; authenticate with a paid account, or raise `interval` (a pull check's manifest GET counts, its HEAD does not)",
            "docs: https://docs.docker.com/docker-hub/usage/",
        ],
        (I::DockerHub, T::Storage) => &[
            "Docker Hub serves blobs from Cloudflare (production.cloudflare.docker.com and *.r2.cloudflarestorage.com): allow them besides registry-1.docker.io and auth.docker.io",
            "docs: https://docs.docker.com/desktop/setup/allow-list/",
        ],
        (I::Ghcr, T::Login) => &[
            "set username to the GitHub user and password_file to a personal access token (classic) with read:packages (write:packages to push); fine-grained tokens do not work with GHCR",
            "docs: https://docs.github.com/en/packages/working-with-a-github-packages-registry/working-with-the-container-registry#authenticating-with-a-personal-access-token-classic",
        ],
        (I::Ghcr, T::Access) => &[
            "give the user access to the package (Package settings > Manage access: Read, or Write to push), or link the package to a repository the user can read",
            "docs: https://docs.github.com/en/packages/learn-github-packages/configuring-a-packages-access-control-and-visibility",
        ],
        (I::Ghcr, T::Limits) => &[
            "GitHub limits requests per account and per IP: authenticate, and raise `interval`",
            "docs: https://docs.github.com/en/packages/working-with-a-github-packages-registry/working-with-the-container-registry",
        ],
        (I::Ghcr, T::Storage) => &[
            "GHCR serves blobs from pkg-containers.githubusercontent.com: allow it besides ghcr.io",
            "docs: https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/about-githubs-ip-addresses",
        ],
        (I::Harbor, T::Login) => &[
            "set username to a robot account (robot$<project>+<name>, or robot$<name> for a system robot) and password_file to its secret; a robot account expires at the date set at creation: refresh or extend it in the project's Robot Accounts",
            "docs: https://goharbor.io/docs/main/working-with-projects/project-configuration/create-robot-accounts/",
        ],
        (I::Harbor, T::Access) if reason == Reason::ReadOnly => &[
            "an administrator put Harbor in read-only mode (Administration > Configuration > System Settings > Repository Read Only): uncheck it when maintenance is over",
            "docs: https://goharbor.io/docs/main/administration/general-settings/",
        ],
        (I::Harbor, T::Access) if writes => &[
            "give the robot account the Push Repository (and Pull) permission in the project of `push_test_repository`; the project must exist (Harbor creates repositories, not projects, on push)",
            "docs: https://goharbor.io/docs/main/working-with-projects/project-configuration/create-robot-accounts/",
        ],
        (I::Harbor, T::Access) => &[
            "give the robot account the Pull Repository permission in the project of `test_repository` (Projects > <project> > Robot Accounts), or make it a project member with the Guest role",
            "docs: https://goharbor.io/docs/main/working-with-projects/project-configuration/create-robot-accounts/",
        ],
        (I::Harbor, T::Limits) => return None,
        (I::Harbor, T::Storage) => &[
            "Harbor's registry redirects blob downloads to S3/GCS/Azure storage unless storage_service.redirect.disable is true in harbor.yml: allow the bucket's host, or disable the redirect",
            "docs: https://goharbor.io/docs/main/install-config/configure-yml-file/",
        ],
        (I::Quay, T::Login) => &[
            "set username to a robot account (<org>+<name>) and password_file to its token; a deleted or regenerated robot token is refused",
            "docs: https://docs.projectquay.io/use_quay.html#allow-robot-access-user-repo",
        ],
        (I::Quay, T::Access) => &[
            "give the robot account Read (or Write to push) on the repository, or through a team with that role; repositories are created on push only where the account may create them",
            "docs: https://docs.projectquay.io/use_quay.html#allow-robot-access-user-repo",
        ],
        (I::Quay, T::Limits) => &[
            "Quay limits requests per IP (HTTP 429): raise `interval`",
            "docs: https://docs.projectquay.io/use_quay.html",
        ],
        (I::Quay, T::Storage) => &[
            "Quay redirects blob downloads to its storage or CDN (cdn*.quay.io on quay.io, the configured S3/Ceph host on self-hosted Quay): allow that host",
            "docs: https://docs.projectquay.io/deploy_quay.html",
        ],
        (I::Gitlab, T::Login) => &[
            "set username and password_file to a deploy token with read_registry (write_registry to push), or a personal/project access token with read_registry; expired tokens are refused",
            "docs: https://docs.gitlab.com/ee/user/packages/container_registry/authenticate_with_container_registry.html",
        ],
        (I::Gitlab, T::Access) if writes => &[
            "pushing needs at least the Developer role in the project (or a token with write_registry); the project must exist",
            "docs: https://docs.gitlab.com/ee/user/permissions.html",
        ],
        (I::Gitlab, T::Access) => &[
            "pulling needs at least the Reporter role in the project (or a deploy token with read_registry)",
            "docs: https://docs.gitlab.com/ee/user/permissions.html",
        ],
        (I::Gitlab, T::Limits) => return None,
        (I::Gitlab, T::Storage) => &[
            "with object storage, GitLab's registry redirects blob downloads to the bucket: allow its host, or set the storage's redirect disable option",
            "docs: https://docs.gitlab.com/ee/administration/packages/container_registry.html#use-object-storage",
        ],
        (I::Ecr, T::Login) => &[
            "ECR passwords are 12-hour authorization tokens: use docker_config with credHelpers pointing at docker-credential-ecr-login (amazon-ecr-credential-helper) rather than a saved token",
            "docs: https://github.com/awslabs/amazon-ecr-credential-helper",
        ],
        (I::Ecr, T::Access) if reason == Reason::RepositoryNotFound => &[
            "ECR does not create repositories on push: aws ecr create-repository --repository-name <push_test_repository>",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/userguide/repository-create.html",
        ],
        (I::Ecr, T::Access) if writes => &[
            "the IAM principal needs ecr:InitiateLayerUpload, ecr:UploadLayerPart, ecr:CompleteLayerUpload, ecr:PutImage and ecr:BatchCheckLayerAvailability on the repository (identity policy, and the repository policy if it has one)",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-push-iam.html",
        ],
        (I::Ecr, T::Access) => &[
            "the IAM principal needs ecr:GetAuthorizationToken, ecr:BatchGetImage and ecr:GetDownloadUrlForLayer (identity policy, and the repository policy if it has one)",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/userguide/repository-policy-examples.html",
        ],
        (I::Ecr, T::Limits) => &[
            "ECR throttles API calls per account and region (service quotas for BatchGetImage, GetDownloadUrlForLayer): raise `interval` or request a quota increase",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/userguide/service-quotas.html",
        ],
        (I::Ecr, T::Storage) => &[
            "ECR serves layers from S3 (prod-<region>-starport-layer-bucket.s3.<region>.amazonaws.com): allow it, or add the S3 gateway endpoint in a private VPC",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html",
        ],
        (I::EcrPublic, T::Login | T::Access) => &[
            "ECR Public is readable anonymously; pushes need ecr-public:* permissions in us-east-1 and a token from aws ecr-public get-login-password --region us-east-1 (set username to AWS and password_file to it, refreshed within 12 hours)",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/public/public-registry-auth.html",
        ],
        (I::EcrPublic, T::Limits) => &[
            "anonymous pulls from ECR Public are limited to 1 per second per IP: authenticate with an AWS account for 10 per second",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/public/public-service-quotas.html",
        ],
        (I::EcrPublic, T::Storage) => &[
            "ECR Public serves layers from CloudFront/S3 hosts: allow them besides public.ecr.aws",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/public/public-registries.html",
        ],
        (I::ArtifactRegistry, T::Login) => &[
            "log in as oauth2accesstoken with a fresh access token (gcloud auth print-access-token, valid an hour) or as _json_key with a service-account key; prefer the docker-credential-gcr helper in docker_config",
            "docs: https://cloud.google.com/artifact-registry/docs/docker/authentication",
        ],
        (I::ArtifactRegistry, T::Access) if writes => &[
            "grant the service account roles/artifactregistry.writer on the repository",
            "docs: https://cloud.google.com/artifact-registry/docs/access-control#roles",
        ],
        (I::ArtifactRegistry, T::Access) => &[
            "grant the service account roles/artifactregistry.reader on the repository (or the project)",
            "docs: https://cloud.google.com/artifact-registry/docs/access-control#roles",
        ],
        (I::ArtifactRegistry, T::Limits) => &[
            "Artifact Registry limits requests per project and region: raise `interval` or request more quota",
            "docs: https://cloud.google.com/artifact-registry/quotas",
        ],
        (I::ArtifactRegistry, T::Storage) => &[
            "Artifact Registry serves blobs from Cloud Storage hosts (storage.googleapis.com): allow them, and check VPC Service Controls",
            "docs: https://cloud.google.com/artifact-registry/docs/securing-with-vpc-sc",
        ],
        (I::Acr, T::Login) => &[
            "set username and password_file to a service principal (application ID and client secret; secrets expire: see Microsoft Entra ID) or a repository-scoped token, or docker_config with an identity token",
            "docs: https://learn.microsoft.com/azure/container-registry/container-registry-authentication",
        ],
        (I::Acr, T::Access) if writes => &[
            "assign the AcrPush role (or a repository-scoped token with content/write) to the principal",
            "docs: https://learn.microsoft.com/azure/container-registry/container-registry-roles",
        ],
        (I::Acr, T::Access) => &[
            "assign the AcrPull role (or a repository-scoped token with content/read) to the principal",
            "docs: https://learn.microsoft.com/azure/container-registry/container-registry-roles",
        ],
        (I::Acr, T::Limits) => &[
            "ACR throttles by SKU (Basic, Standard, Premium): raise `interval`, or move to a higher SKU",
            "docs: https://learn.microsoft.com/azure/container-registry/container-registry-skus",
        ],
        (I::Acr, T::Storage) => &[
            "ACR serves blobs from its data endpoints (<name>.<region>.data.azurecr.io, or *.blob.core.windows.net): allow them in the firewall",
            "docs: https://learn.microsoft.com/azure/container-registry/container-registry-firewall-access-rules",
        ],
        (I::Artifactory, T::Login) => &[
            "set username to the Artifactory user and password_file to its identity token (Edit Profile > Generate an Identity Token); tokens expire",
            "docs: https://jfrog.com/help/r/jfrog-artifactory-documentation/docker-registry",
        ],
        (I::Artifactory, T::Access) => &[
            "give the user or its group Read (Deploy/Cache to push) on the Docker repository in a permission target",
            "docs: https://jfrog.com/help/r/jfrog-platform-administration-documentation/permissions",
        ],
        (I::Artifactory, T::Limits) => return None,
        (I::Artifactory, T::Storage) => &[
            "with Direct Cloud Storage Download, Artifactory redirects downloads to signed S3/GCS/Azure URLs: allow the bucket's host, or turn the redirect off",
            "docs: https://jfrog.com/help/r/jfrog-artifactory-documentation/direct-cloud-storage-download",
        ],
        (I::Nexus, T::Login) => &[
            "set username and password_file to a Nexus user; the Docker Bearer Token Realm must be active (Security > Realms) for docker login to work",
            "docs: https://help.sonatype.com/en/docker-authentication.html",
        ],
        (I::Nexus, T::Access) => &[
            "give the user a role with nx-repository-view-docker-<repository>-read and -browse (add, edit to push)",
            "docs: https://help.sonatype.com/en/docker-authentication.html",
        ],
        (I::Nexus, T::Limits | T::Storage) => return None,
        (I::Zot, T::Login) => &[
            "set username and password_file to a user of zot's htpasswd file (http.auth.htpasswd.path), LDAP or OpenID setup",
            "docs: https://zotregistry.dev/latest/articles/authn-authz/",
        ],
        (I::Zot, T::Access) => &[
            "grant the user read (create to push) on the repository in http.accessControl",
            "docs: https://zotregistry.dev/latest/articles/authn-authz/",
        ],
        (I::Zot, T::Limits) => return None,
        (I::Zot, T::Storage) => &[
            "with S3 storage zot may redirect blob downloads to the bucket: allow its host",
            "docs: https://zotregistry.dev/latest/admin-guide/admin-configuration/",
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{AuthUsed, RequestRecord, Status};

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
            // JFrog: X-JFrog-Version on every answer, "Artifactory Realm" (tests/registry_behaviours.rs).
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
