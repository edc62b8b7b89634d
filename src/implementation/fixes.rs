//! The products' own fix steps ([`fix`]) for the reasons that need a person to act, one
//! function per product: `catalogue::diagnose` puts them in place of the generic steps.
//! Each product's steps end with a link to its documentation.

use crate::outcome::{CheckKind, Implementation, Reason};

/// Fix steps: sentences for a person, the last one a documentation link.
type Steps = &'static [&'static str];

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

/// What a fix answers: the act the reason asks for, the reason itself (a few products
/// word read-only or a missing repository apart), and whether the check writes.
#[derive(Debug, Clone, Copy)]
struct Ask {
    topic: Topic,
    reason: Reason,
    writes: bool,
}

/// The product's own fix steps for `reason` (the last step links its documentation), or
/// `None` to keep the generic ones: for an unknown product, a reason no person fixes, or
/// one the product has nothing specific for.
pub fn fix(implementation: Implementation, check: CheckKind, reason: Reason) -> Option<Steps> {
    use Implementation as I;
    let ask = Ask {
        topic: topic(reason)?,
        reason,
        writes: matches!(check, CheckKind::Push | CheckKind::Capabilities),
    };
    match implementation {
        I::Unknown => None,
        I::Distribution => distribution(ask),
        I::DockerHub => docker_hub(ask),
        I::Ghcr => ghcr(ask),
        I::Harbor => harbor(ask),
        I::Quay => quay(ask),
        I::Gitlab => gitlab(ask),
        I::Ecr => ecr(ask),
        I::EcrPublic => ecr_public(ask),
        I::ArtifactRegistry => artifact_registry(ask),
        I::Acr => acr(ask),
        I::Artifactory => artifactory(ask),
        I::Nexus => nexus(ask),
        I::Zot => zot(ask),
    }
}

fn distribution(ask: Ask) -> Option<Steps> {
    use Topic as T;
    Some(match ask.topic {
        // The generic steps (docker login, password_file) are Distribution's own words.
        T::Login => return None,
        T::Access if ask.reason == Reason::ReadOnly => &[
            "turn maintenance mode off when it is over: storage.maintenance.readonly.enabled: false, then restart the registry",
            "docs: https://distribution.github.io/distribution/about/configuration/#maintenance",
        ],
        T::Access => &[
            "Distribution itself has no per-repository permissions: the token service (auth.token.realm) grants the actions; give the account pull (and push for the push test repository) there",
            "docs: https://distribution.github.io/distribution/spec/auth/token/",
        ],
        T::Limits => return None,
        T::Storage => &[
            "with S3, GCS or Azure storage Distribution redirects blob downloads to the bucket: allow the bucket's host in the firewall and proxy, or set storage.redirect.disable: true to serve blobs through the registry",
            "docs: https://distribution.github.io/distribution/about/configuration/#redirect",
        ],
    })
}

fn docker_hub(ask: Ask) -> Option<Steps> {
    use Topic as T;
    Some(match ask.topic {
        T::Login => &[
            "set username to the Docker ID and password_file to a personal access token (Account settings > Personal access tokens) with Read-only scope; an expired or deleted token is refused",
            "docs: https://docs.docker.com/security/for-developers/access-tokens/",
        ],
        T::Access => &[
            "the access token needs Read (pull) or Read & Write (push) scope, and the account membership in the organization's team with access to the repository",
            "docs: https://docs.docker.com/security/for-developers/access-tokens/",
        ],
        T::Limits => &[
            "Docker Hub limits pulls per 6 hours: anonymous by IP, authenticated per account; authenticate with a paid account, or raise `interval` (a pull check's manifest GET counts, its HEAD does not)",
            "docs: https://docs.docker.com/docker-hub/usage/",
        ],
        T::Storage => &[
            "Docker Hub serves blobs from Cloudflare (production.cloudflare.docker.com and *.r2.cloudflarestorage.com): allow them besides registry-1.docker.io and auth.docker.io",
            "docs: https://docs.docker.com/desktop/setup/allow-list/",
        ],
    })
}

fn ghcr(ask: Ask) -> Option<Steps> {
    use Topic as T;
    Some(match ask.topic {
        T::Login => &[
            "set username to the GitHub user and password_file to a personal access token (classic) with read:packages (write:packages to push); fine-grained tokens do not work with GHCR",
            "docs: https://docs.github.com/en/packages/working-with-a-github-packages-registry/working-with-the-container-registry#authenticating-with-a-personal-access-token-classic",
        ],
        T::Access => &[
            "give the user access to the package (Package settings > Manage access: Read, or Write to push), or link the package to a repository the user can read",
            "docs: https://docs.github.com/en/packages/learn-github-packages/configuring-a-packages-access-control-and-visibility",
        ],
        T::Limits => &[
            "GitHub limits requests per account and per IP: authenticate, and raise `interval`",
            "docs: https://docs.github.com/en/packages/working-with-a-github-packages-registry/working-with-the-container-registry",
        ],
        T::Storage => &[
            "GHCR serves blobs from pkg-containers.githubusercontent.com: allow it besides ghcr.io",
            "docs: https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/about-githubs-ip-addresses",
        ],
    })
}

fn harbor(ask: Ask) -> Option<Steps> {
    use Topic as T;
    Some(match ask.topic {
        T::Login => &[
            "set username to a robot account (robot$<project>+<name>, or robot$<name> for a system robot) and password_file to its secret; a robot account expires at the date set at creation: refresh or extend it in the project's Robot Accounts",
            "docs: https://goharbor.io/docs/main/working-with-projects/project-configuration/create-robot-accounts/",
        ],
        T::Access if ask.reason == Reason::ReadOnly => &[
            "an administrator put Harbor in read-only mode (Administration > Configuration > System Settings > Repository Read Only): uncheck it when maintenance is over",
            "docs: https://goharbor.io/docs/main/administration/general-settings/",
        ],
        T::Access if ask.writes => &[
            "give the robot account the Push Repository (and Pull) permission in the project of `push_test_repository`; the project must exist (Harbor creates repositories, not projects, on push)",
            "docs: https://goharbor.io/docs/main/working-with-projects/project-configuration/create-robot-accounts/",
        ],
        T::Access => &[
            "give the robot account the Pull Repository permission in the project of `test_repository` (Projects > <project> > Robot Accounts), or make it a project member with the Guest role",
            "docs: https://goharbor.io/docs/main/working-with-projects/project-configuration/create-robot-accounts/",
        ],
        T::Limits => return None,
        T::Storage => &[
            "Harbor's registry redirects blob downloads to S3/GCS/Azure storage unless storage_service.redirect.disable is true in harbor.yml: allow the bucket's host, or disable the redirect",
            "docs: https://goharbor.io/docs/main/install-config/configure-yml-file/",
        ],
    })
}

fn quay(ask: Ask) -> Option<Steps> {
    use Topic as T;
    Some(match ask.topic {
        T::Login => &[
            "set username to a robot account (<org>+<name>) and password_file to its token; a deleted or regenerated robot token is refused",
            "docs: https://docs.projectquay.io/use_quay.html#allow-robot-access-user-repo",
        ],
        T::Access => &[
            "give the robot account Read (or Write to push) on the repository, or through a team with that role; repositories are created on push only where the account may create them",
            "docs: https://docs.projectquay.io/use_quay.html#allow-robot-access-user-repo",
        ],
        T::Limits => &[
            "Quay limits requests per IP (HTTP 429): raise `interval`",
            "docs: https://docs.projectquay.io/use_quay.html",
        ],
        T::Storage => &[
            "Quay redirects blob downloads to its storage or CDN (cdn*.quay.io on quay.io, the configured S3/Ceph host on self-hosted Quay): allow that host",
            "docs: https://docs.projectquay.io/deploy_quay.html",
        ],
    })
}

fn gitlab(ask: Ask) -> Option<Steps> {
    use Topic as T;
    Some(match ask.topic {
        T::Login => &[
            "set username and password_file to a deploy token with read_registry (write_registry to push), or a personal/project access token with read_registry; expired tokens are refused",
            "docs: https://docs.gitlab.com/ee/user/packages/container_registry/authenticate_with_container_registry.html",
        ],
        T::Access if ask.writes => &[
            "pushing needs at least the Developer role in the project (or a token with write_registry); the project must exist",
            "docs: https://docs.gitlab.com/ee/user/permissions.html",
        ],
        T::Access => &[
            "pulling needs at least the Reporter role in the project (or a deploy token with read_registry)",
            "docs: https://docs.gitlab.com/ee/user/permissions.html",
        ],
        T::Limits => return None,
        T::Storage => &[
            "with object storage, GitLab's registry redirects blob downloads to the bucket: allow its host, or set the storage's redirect disable option",
            "docs: https://docs.gitlab.com/ee/administration/packages/container_registry.html#use-object-storage",
        ],
    })
}

fn ecr(ask: Ask) -> Option<Steps> {
    use Topic as T;
    Some(match ask.topic {
        T::Login => &[
            "ECR passwords are 12-hour authorization tokens: use docker_config with credHelpers pointing at docker-credential-ecr-login (amazon-ecr-credential-helper) rather than a saved token",
            "docs: https://github.com/awslabs/amazon-ecr-credential-helper",
        ],
        T::Access if ask.reason == Reason::RepositoryNotFound => &[
            "ECR does not create repositories on push: aws ecr create-repository --repository-name <push_test_repository>",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/userguide/repository-create.html",
        ],
        T::Access if ask.writes => &[
            "the IAM principal needs ecr:InitiateLayerUpload, ecr:UploadLayerPart, ecr:CompleteLayerUpload, ecr:PutImage and ecr:BatchCheckLayerAvailability on the repository (identity policy, and the repository policy if it has one)",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-push-iam.html",
        ],
        T::Access => &[
            "the IAM principal needs ecr:GetAuthorizationToken, ecr:BatchGetImage and ecr:GetDownloadUrlForLayer (identity policy, and the repository policy if it has one)",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/userguide/repository-policy-examples.html",
        ],
        T::Limits => &[
            "ECR throttles API calls per account and region (service quotas for BatchGetImage, GetDownloadUrlForLayer): raise `interval` or request a quota increase",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/userguide/service-quotas.html",
        ],
        T::Storage => &[
            "ECR serves layers from S3 (prod-<region>-starport-layer-bucket.s3.<region>.amazonaws.com): allow it, or add the S3 gateway endpoint in a private VPC",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html",
        ],
    })
}

fn ecr_public(ask: Ask) -> Option<Steps> {
    use Topic as T;
    Some(match ask.topic {
        T::Login | T::Access => &[
            "ECR Public is readable anonymously; pushes need ecr-public:* permissions in us-east-1 and a token from aws ecr-public get-login-password --region us-east-1 (set username to AWS and password_file to it, refreshed within 12 hours)",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/public/public-registry-auth.html",
        ],
        T::Limits => &[
            "anonymous pulls from ECR Public are limited to 1 per second per IP: authenticate with an AWS account for 10 per second",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/public/public-service-quotas.html",
        ],
        T::Storage => &[
            "ECR Public serves layers from CloudFront/S3 hosts: allow them besides public.ecr.aws",
            "docs: https://docs.aws.amazon.com/AmazonECR/latest/public/public-registries.html",
        ],
    })
}

fn artifact_registry(ask: Ask) -> Option<Steps> {
    use Topic as T;
    Some(match ask.topic {
        T::Login => &[
            "log in as oauth2accesstoken with a fresh access token (gcloud auth print-access-token, valid an hour) or as _json_key with a service-account key; prefer the docker-credential-gcr helper in docker_config",
            "docs: https://cloud.google.com/artifact-registry/docs/docker/authentication",
        ],
        T::Access if ask.writes => &[
            "grant the service account roles/artifactregistry.writer on the repository",
            "docs: https://cloud.google.com/artifact-registry/docs/access-control#roles",
        ],
        T::Access => &[
            "grant the service account roles/artifactregistry.reader on the repository (or the project)",
            "docs: https://cloud.google.com/artifact-registry/docs/access-control#roles",
        ],
        T::Limits => &[
            "Artifact Registry limits requests per project and region: raise `interval` or request more quota",
            "docs: https://cloud.google.com/artifact-registry/quotas",
        ],
        T::Storage => &[
            "Artifact Registry serves blobs from Cloud Storage hosts (storage.googleapis.com): allow them, and check VPC Service Controls",
            "docs: https://cloud.google.com/artifact-registry/docs/securing-with-vpc-sc",
        ],
    })
}

fn acr(ask: Ask) -> Option<Steps> {
    use Topic as T;
    Some(match ask.topic {
        T::Login => &[
            "set username and password_file to a service principal (application ID and client secret; secrets expire: see Microsoft Entra ID) or a repository-scoped token, or docker_config with an identity token",
            "docs: https://learn.microsoft.com/azure/container-registry/container-registry-authentication",
        ],
        T::Access if ask.writes => &[
            "assign the AcrPush role (or a repository-scoped token with content/write) to the principal",
            "docs: https://learn.microsoft.com/azure/container-registry/container-registry-roles",
        ],
        T::Access => &[
            "assign the AcrPull role (or a repository-scoped token with content/read) to the principal",
            "docs: https://learn.microsoft.com/azure/container-registry/container-registry-roles",
        ],
        T::Limits => &[
            "ACR throttles by SKU (Basic, Standard, Premium): raise `interval`, or move to a higher SKU",
            "docs: https://learn.microsoft.com/azure/container-registry/container-registry-skus",
        ],
        T::Storage => &[
            "ACR serves blobs from its data endpoints (<name>.<region>.data.azurecr.io, or *.blob.core.windows.net): allow them in the firewall",
            "docs: https://learn.microsoft.com/azure/container-registry/container-registry-firewall-access-rules",
        ],
    })
}

fn artifactory(ask: Ask) -> Option<Steps> {
    use Topic as T;
    Some(match ask.topic {
        T::Login => &[
            "set username to the Artifactory user and password_file to its identity token (Edit Profile > Generate an Identity Token); tokens expire",
            "docs: https://jfrog.com/help/r/jfrog-artifactory-documentation/docker-registry",
        ],
        T::Access => &[
            "give the user or its group Read (Deploy/Cache to push) on the Docker repository in a permission target",
            "docs: https://jfrog.com/help/r/jfrog-platform-administration-documentation/permissions",
        ],
        T::Limits => return None,
        T::Storage => &[
            "with Direct Cloud Storage Download, Artifactory redirects downloads to signed S3/GCS/Azure URLs: allow the bucket's host, or turn the redirect off",
            "docs: https://jfrog.com/help/r/jfrog-artifactory-documentation/direct-cloud-storage-download",
        ],
    })
}

fn nexus(ask: Ask) -> Option<Steps> {
    use Topic as T;
    Some(match ask.topic {
        T::Login => &[
            "set username and password_file to a Nexus user; the Docker Bearer Token Realm must be active (Security > Realms) for docker login to work",
            "docs: https://help.sonatype.com/en/docker-authentication.html",
        ],
        T::Access => &[
            "give the user a role with nx-repository-view-docker-<repository>-read and -browse (add, edit to push)",
            "docs: https://help.sonatype.com/en/docker-authentication.html",
        ],
        T::Limits | T::Storage => return None,
    })
}

fn zot(ask: Ask) -> Option<Steps> {
    use Topic as T;
    Some(match ask.topic {
        T::Login => &[
            "set username and password_file to a user of zot's htpasswd file (http.auth.htpasswd.path), LDAP or OpenID setup",
            "docs: https://zotregistry.dev/latest/articles/authn-authz/",
        ],
        T::Access => &[
            "grant the user read (create to push) on the repository in http.accessControl",
            "docs: https://zotregistry.dev/latest/articles/authn-authz/",
        ],
        T::Limits => return None,
        T::Storage => &[
            "with S3 storage zot may redirect blob downloads to the bucket: allow its host",
            "docs: https://zotregistry.dev/latest/admin-guide/admin-configuration/",
        ],
    })
}
