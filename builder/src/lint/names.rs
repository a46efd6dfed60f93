//! Name heuristics shared by the Dockerfile and compose rules: secret-like
//! variable names, image references as written, database images.

/// Words that make a variable name look like it holds a secret.
const SECRET_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "PWORD",
    "PASSPHRASE",
    "TOKEN",
    "SECRET",
    "KEY",
    "APIKEY",
    "CREDENTIAL",
    "CREDENTIALS",
    "PRIVATEKEY",
    "ACCESSKEY",
    "SECRETKEY",
    "AUTHTOKEN",
];

/// Words that say the variable holds something about a secret, not the secret:
/// a path to it (`DB_PASSWORD_FILE`, the `*_FILE` convention of official
/// images), a public key or a key id (`GPG_KEY` in the official python images
/// is a key fingerprint), a URL to fetch a token from.
const NOT_A_SECRET_WORDS: &[&str] = &[
    "FILE",
    "PATH",
    "DIR",
    "URL",
    "URI",
    "ENDPOINT",
    "PUBLIC",
    "PUB",
    "GPG",
    "PGP",
    "ID",
    "NAME",
    "FINGERPRINT",
    "SERVER",
    "HOST",
    "PORT",
    "LENGTH",
    "SIZE",
    "TYPE",
    "ALGORITHM",
];

/// Splits a variable name into upper-case words at `_`, `-`, `.` and lower→upper
/// case changes: `dbPassword` → `DB`, `PASSWORD`; `KEYBOARD_LAYOUT` → `KEYBOARD`,
/// `LAYOUT`.
fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        current.push(c.to_ascii_uppercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Whether `name` looks like it holds a secret: one of its words is PASSWORD,
/// TOKEN, SECRET, KEY (…) and none says it is a path, URL, id or public key.
/// Whole words only, so `KEYBOARD` and `MONKEY` do not count.
pub fn is_secret_name(name: &str) -> bool {
    let words = words(name);
    words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
        && !words
            .iter()
            .any(|w| NOT_A_SECRET_WORDS.contains(&w.as_str()))
}

/// An image reference split as written (no normalisation): `repository` keeps
/// any registry host, `tag` and `digest` are what follows `:` and `@`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName<'a> {
    pub repository: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

impl<'a> ImageName<'a> {
    pub fn split(reference: &'a str) -> ImageName<'a> {
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (reference, None),
        };
        // A `:` after the last `/` starts the tag; one before it is a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        ImageName {
            repository,
            tag,
            digest,
        }
    }

    /// The last path component of the repository (`postgres` for
    /// `docker.io/library/postgres`).
    pub fn base_name(&self) -> &'a str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(self.repository)
    }
}

/// Images whose containers keep state: their last path component is one of
/// these, or starts with one followed by `-` (`mysql-server`, `redis-stack`).
const DATABASE_IMAGES: &[&str] = &[
    "postgres",
    "postgresql",
    "postgis",
    "pgvector",
    "timescaledb",
    "mysql",
    "mariadb",
    "percona",
    "mongo",
    "mongodb",
    "redis",
    "valkey",
    "keydb",
    "dragonfly",
    "memcached",
    "cassandra",
    "scylla",
    "couchdb",
    "couchbase",
    "neo4j",
    "influxdb",
    "elasticsearch",
    "opensearch",
    "clickhouse",
    "cockroach",
    "arangodb",
    "rethinkdb",
    "questdb",
    "surrealdb",
    "etcd",
];

/// Whether an image reference names a database (see [`DATABASE_IMAGES`]); also
/// `mcr.microsoft.com/mssql/server`.
pub fn is_database_image(reference: &str) -> bool {
    let name = ImageName::split(reference);
    let base = name.base_name().to_ascii_lowercase();
    DATABASE_IMAGES.iter().any(|db| {
        base == *db
            || base
                .strip_prefix(db)
                .is_some_and(|rest| rest.starts_with('-'))
    }) || name.repository.to_ascii_lowercase().contains("mssql/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_matched_by_word() {
        for name in [
            "DB_PASSWORD",
            "POSTGRES_PASSWORD",
            "api_token",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "apiKey",
            "SECRET",
            "NPM_AUTHTOKEN",
            "private-key",
        ] {
            assert!(is_secret_name(name), "{name} should look secret");
        }
        for name in [
            "KEYBOARD",
            "MONKEY_BUSINESS",
            "TOKENIZER_PARALLELISM",
            "POSTGRES_PASSWORD_FILE",
            "GPG_KEY",
            "SSH_PUBLIC_KEY",
            "KEY_ID",
            "TOKEN_URL",
            "PATH",
            "PASSWORDLESS",
        ] {
            assert!(!is_secret_name(name), "{name} should not look secret");
        }
    }

    #[test]
    fn image_names_split_like_references() {
        let n = ImageName::split("localhost:5000/team/app:1.2@sha256:abc");
        assert_eq!(n.repository, "localhost:5000/team/app");
        assert_eq!(n.tag, Some("1.2"));
        assert_eq!(n.digest, Some("sha256:abc"));
        assert_eq!(n.base_name(), "app");
        let n = ImageName::split("localhost:5000/app");
        assert_eq!((n.repository, n.tag), ("localhost:5000/app", None));
        let n = ImageName::split("python");
        assert_eq!((n.repository, n.tag, n.digest), ("python", None, None));
    }

    #[test]
    fn database_images() {
        for image in [
            "postgres:16",
            "docker.io/library/mysql",
            "bitnami/postgresql:16",
            "redis/redis-stack:7",
            "mongo@sha256:00",
            "mcr.microsoft.com/mssql/server:2022-latest",
        ] {
            assert!(is_database_image(image), "{image}");
        }
        for image in ["node:20", "nginx", "postgrest/postgrest", "redisinsight"] {
            assert!(!is_database_image(image), "{image}");
        }
    }
}
