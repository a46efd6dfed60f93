//! The compose frontend against real files: the fixtures in `tests/fixtures/compose`,
//! small projects written to temporary directories, and the compose-spec schema from
//! `../shared/conformance` checked with the `jsonschema` crate.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kiln_builder::frontend::compose::yaml::parse_documents;
use kiln_builder::frontend::compose::{
    AdditionalContext, BuildContext, DependencyCondition, DockerfileSource, Error, LoadOptions,
    MountKind, Project, SecretSource, TagScheme, Warning, diag::SourceFile, interpolate, schema,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose")
}

/// `shared/conformance`, found beside the checkout by walking up from the crate.
fn shared_conformance() -> Option<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared/conformance"))
        .find(|dir| dir.is_dir())
}

fn environment(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn options(dir: &Path, files: &[&str], env: &[(&str, &str)]) -> LoadOptions {
    let mut options = LoadOptions::with_environment(dir, environment(env));
    options.files = files.iter().map(PathBuf::from).collect();
    options
}

fn load(dir: &Path, files: &[&str], env: &[(&str, &str)]) -> Result<Project, Error> {
    Project::load(&options(dir, files, env))
}

/// A temporary project made of `(path, content)` files.
fn project_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kiln-compose-")
        .tempdir()
        .unwrap();
    for (path, content) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    dir
}

fn json(project: &Project, pointer: &str) -> serde_json::Value {
    project
        .document()
        .to_json()
        .pointer(pointer)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

// ---------------------------------------------------------------------------------------
// Interpolation

#[test]
fn interpolation_forms_of_the_spec() {
    let env = environment(&[("SET", "value"), ("EMPTY", ""), ("FOO", "foo")]);
    let lookup = |name: &str| env.get(name).cloned();
    let cases = [
        ("$SET", "value"),
        ("${SET}", "value"),
        ("${UNSET:-default}", "default"),
        ("${EMPTY:-default}", "default"),
        ("${UNSET-default}", "default"),
        ("${EMPTY-default}", ""),
        ("${SET:?err}", "value"),
        ("${EMPTY?err}", ""),
        ("${SET:+replacement}", "replacement"),
        ("${EMPTY:+replacement}", ""),
        ("${EMPTY+replacement}", "replacement"),
        ("${UNSET+replacement}", ""),
        ("${UNSET:-${FOO}}", "foo"),
        ("${SET?$FOO}", "value"),
        ("${UNSET:-${ALSO_UNSET:-default}}", "default"),
        (
            "$$VAR_NOT_INTERPOLATED_BY_COMPOSE",
            "$VAR_NOT_INTERPOLATED_BY_COMPOSE",
        ),
        ("price: 5$ or $5", "price: 5$ or $5"),
        ("$UNSET", ""),
    ];
    for (input, expected) in cases {
        assert_eq!(interpolate(input, lookup).unwrap(), expected, "{input}");
    }
    for (input, message) in [
        (
            "${UNSET:?err}",
            "required variable UNSET is missing a value: err",
        ),
        (
            "${EMPTY:?err}",
            "required variable EMPTY is missing a value: err",
        ),
        (
            "${UNSET?needs $FOO}",
            "required variable UNSET is missing a value: needs foo",
        ),
    ] {
        assert_eq!(interpolate(input, lookup).unwrap_err().to_string(), message);
    }
    assert!(interpolate("${VARIABLE/foo/bar}", lookup).is_err());
}

#[test]
fn required_variable_error_names_file_line_and_column() {
    let dir = fixtures().join("invalid");
    let err = load(&dir, &["required-variable.yaml"], &[]).unwrap_err();
    insta::assert_snapshot!(err.to_string(), @"required-variable.yaml:7:12: required variable APP_VERSION is missing a value: set it in .env");
    let Error::Interpolation { location, path, .. } = err else {
        panic!("expected an interpolation error");
    };
    assert_eq!((location.line, location.column), (7, 12));
    assert_eq!(path.to_string(), "services.api.image");
    // With the variable set, the same file loads.
    let project = load(&dir, &["required-variable.yaml"], &[("APP_VERSION", "1.0")]).unwrap();
    assert_eq!(project.services["api"].image.as_ref().unwrap().value, "1.0");
}

#[test]
fn values_are_interpolated_keys_are_not() {
    let dir = project_dir(&[(
        "compose.yaml",
        "services:\n  foo:\n    image: \"$IMG\"\n    labels:\n      \"$VAR_NOT_INTERPOLATED\": BAR\n    environment:\n      - \"$KEY=BAR\"\n    command: \"$$VAR_NOT_INTERPOLATED_BY_COMPOSE\"\n    x-note: ${NOT_SET_ANYWHERE}\n",
    )]);
    let project = load(
        dir.path(),
        &[],
        &[("IMG", "busybox"), ("KEY", "interpolated")],
    )
    .unwrap();
    let foo = &project.services["foo"];
    assert_eq!(foo.image.as_ref().unwrap().value, "busybox");
    assert_eq!(foo.labels["$VAR_NOT_INTERPOLATED"], "BAR");
    assert_eq!(
        foo.environment["interpolated"].value.as_deref(),
        Some("BAR")
    );
    assert_eq!(
        json(&project, "/services/foo/command"),
        "$VAR_NOT_INTERPOLATED_BY_COMPOSE"
    );
    assert!(project.warnings.contains(&Warning::UnsetVariable {
        name: "NOT_SET_ANYWHERE".into()
    }));
}

#[test]
fn interpolated_values_are_cast_where_compose_casts() {
    let dir = project_dir(&[(
        "compose.yaml",
        "services:\n  s:\n    image: x\n    ports:\n      - target: ${PORT}\n    privileged: ${PRIV}\n    healthcheck:\n      retries: ${RETRIES}\n",
    )]);
    let project = load(
        dir.path(),
        &[],
        &[("PORT", "8080"), ("PRIV", "false"), ("RETRIES", "4")],
    )
    .unwrap();
    assert_eq!(json(&project, "/services/s/ports/0/target"), 8080);
    assert_eq!(json(&project, "/services/s/privileged"), false);
    assert_eq!(
        project.services["s"].healthcheck.as_ref().unwrap().retries,
        Some(4)
    );
}

#[test]
fn env_file_parsing_edge_cases() {
    let dotenv = concat!(
        "# comment line\r\n",
        "export EXPORTED=yes\r\n",
        "PLAIN=plain value # inline comment\r\n",
        "HASH=a#b\r\n",
        "SINGLE='literal $PLAIN \\n'\r\n",
        "DOUBLE=\"tab\\tnew\\nline \\\"quoted\\\" $PLAIN\"\r\n",
        "MULTI=\"first\r\nsecond\"\r\n",
        "EMPTY=\r\n",
        "FROM_SHELL\r\n",
        "NOT_IN_SHELL\r\n",
        "COLON: yaml style\r\n",
    );
    let dir = project_dir(&[
        (".env", dotenv),
        (
            "compose.yaml",
            "services:\n  s:\n    image: x\n    environment:\n      EXPORTED: $EXPORTED\n      PLAIN: $PLAIN\n      HASH: $HASH\n      SINGLE: $SINGLE\n      DOUBLE: $DOUBLE\n      MULTI: $MULTI\n      EMPTY: ${EMPTY-unset}\n      FROM_SHELL: $FROM_SHELL\n      NOT_IN_SHELL: ${NOT_IN_SHELL-unset}\n      COLON: $COLON\n",
        ),
    ]);
    let project = load(dir.path(), &[], &[("FROM_SHELL", "shell")]).unwrap();
    let env = |key: &str| {
        project.services["s"].environment[key]
            .value
            .clone()
            .unwrap_or_default()
    };
    assert_eq!(env("EXPORTED"), "yes");
    assert_eq!(env("PLAIN"), "plain value");
    assert_eq!(env("HASH"), "a#b");
    assert_eq!(env("SINGLE"), "literal $PLAIN \\n");
    assert_eq!(env("DOUBLE"), "tab\tnew\nline \"quoted\" plain value");
    assert_eq!(env("MULTI"), "first\nsecond");
    assert_eq!(env("EMPTY"), "");
    assert_eq!(env("FROM_SHELL"), "shell");
    assert_eq!(env("NOT_IN_SHELL"), "unset");
    assert_eq!(env("COLON"), "yaml style");
}

#[test]
fn env_file_errors_name_the_line() {
    let dir = project_dir(&[
        (".env", "A=1\nB=\"never closed\nC=3\n"),
        ("compose.yaml", "services:\n  s:\n    image: x\n"),
    ]);
    let err = load(dir.path(), &[], &[]).unwrap_err();
    assert!(matches!(err, Error::EnvFile { line: 2, .. }), "{err}");
    assert!(
        err.to_string()
            .ends_with(".env:2: unterminated quoted value"),
        "{err}"
    );
}

#[test]
fn environment_precedence_shell_then_env_file_then_dotenv() {
    let dir = project_dir(&[
        (".env", "A=dotenv\nB=dotenv\nC=dotenv\n"),
        ("one.env", "A=one\nB=one\nD=one\n"),
        ("two.env", "D=two\n"),
        (
            "compose.yaml",
            "services:\n  s:\n    image: x\n    environment:\n      A: ${A-}\n      B: ${B-}\n      C: ${C-none}\n      D: ${D-none}\n",
        ),
    ]);
    let values = |project: &Project| -> Vec<String> {
        ["A", "B", "C", "D"]
            .iter()
            .map(|k| {
                project.services["s"].environment[*k]
                    .value
                    .clone()
                    .unwrap_or_default()
            })
            .collect()
    };
    let shell = [("A", "shell")];
    let project = load(dir.path(), &[], &shell).unwrap();
    assert_eq!(values(&project), ["shell", "dotenv", "dotenv", "none"]);

    let mut with_env_files = options(dir.path(), &[], &shell);
    with_env_files.env_files = vec!["one.env".into(), "two.env".into()];
    let project = Project::load(&with_env_files).unwrap();
    // --env-file replaces .env; later files win; the shell wins over all.
    assert_eq!(values(&project), ["shell", "one", "none", "two"]);
}

// ---------------------------------------------------------------------------------------
// Loading

#[test]
fn discovery_walks_up_prefers_compose_yaml_and_loads_the_override() {
    let dir = project_dir(&[
        (
            "compose.yaml",
            "services:\n  s:\n    image: from-compose-yaml\n",
        ),
        (
            "docker-compose.yaml",
            "services:\n  s:\n    image: from-docker-compose\n",
        ),
        (
            "compose.override.yaml",
            "services:\n  s:\n    environment: [OVERRIDDEN=1]\n",
        ),
        ("sub/deeper/README", "no compose file here\n"),
    ]);
    let root = fs::canonicalize(dir.path()).unwrap();
    let project = load(&root.join("sub/deeper"), &[], &[]).unwrap();
    assert_eq!(
        project.compose_files,
        [
            root.join("compose.yaml"),
            root.join("compose.override.yaml")
        ]
    );
    assert_eq!(project.working_dir, root);
    let s = &project.services["s"];
    assert_eq!(s.image.as_ref().unwrap().value, "from-compose-yaml");
    assert_eq!(s.environment["OVERRIDDEN"].value.as_deref(), Some("1"));
    assert!(project.warnings.iter().any(|w| matches!(
        w,
        Warning::MultipleFiles { found, using, .. }
            if found == &["compose.yaml", "docker-compose.yaml"] && using == "compose.yaml"
    )));

    // An explicit -f does not load the override file.
    let project = load(&root, &["compose.yaml"], &[]).unwrap();
    assert_eq!(project.compose_files, [root.join("compose.yaml")]);
    assert!(project.services["s"].environment.is_empty());
}

#[test]
fn discovery_order_and_missing_file() {
    let dir = project_dir(&[
        ("docker-compose.yml", "services:\n  s:\n    image: yml\n"),
        (
            "docker-compose.override.yml",
            "services:\n  s:\n    image: override-yml\n",
        ),
    ]);
    let project = load(dir.path(), &[], &[]).unwrap();
    assert_eq!(
        project.services["s"].image.as_ref().unwrap().value,
        "override-yml"
    );
    assert!(project.warnings.is_empty(), "{:?}", project.warnings);

    let empty = project_dir(&[("README", "nothing\n")]);
    let err = load(empty.path(), &[], &[]).unwrap_err();
    assert!(matches!(err, Error::NoComposeFile { .. }), "{err}");
}

#[test]
fn compose_file_variable_selects_files() {
    let dir = project_dir(&[
        ("a.yaml", "services:\n  s:\n    image: a\n"),
        ("b.yaml", "services:\n  s:\n    image: b\n"),
    ]);
    let project = load(dir.path(), &[], &[("COMPOSE_FILE", "a.yaml:b.yaml")]).unwrap();
    assert_eq!(project.services["s"].image.as_ref().unwrap().value, "b");
    assert_eq!(project.compose_files.len(), 2);
}

#[test]
fn several_files_merge_with_compose_rules() {
    let dir = fixtures().join("merge");
    let project = load(&dir, &["compose.yaml", "compose.prod.yaml"], &[]).unwrap();
    let app = &project.services["app"];
    assert_eq!(app.image.as_ref().unwrap().value, "ghcr.io/acme/app:1.0");
    let build = app.build.as_ref().unwrap();
    assert_eq!(
        build.args,
        BTreeMap::from([
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "20".to_owned()),
            ("C".to_owned(), "3".to_owned())
        ])
    );
    assert_eq!(
        build.labels,
        BTreeMap::from([
            ("owner".to_owned(), "platform".to_owned()),
            ("tier".to_owned(), "backend".to_owned())
        ])
    );
    assert_eq!(
        json(&project, "/services/app/command"),
        serde_json::json!(["python", "-m", "app"])
    );
    assert_eq!(app.environment["MODE"].value.as_deref(), Some("prod"));
    assert_eq!(app.environment["DEBUG"].value.as_deref(), Some("1"));
    let ports: Vec<(Option<&str>, &str)> = app
        .ports
        .iter()
        .map(|p| (p.value.published.as_deref(), p.value.target.as_str()))
        .collect();
    assert_eq!(
        ports,
        [
            (Some("8000"), "8000"),
            (Some("9229"), "9229"),
            (Some("9090"), "9090")
        ]
    );
    assert_eq!(app.expose, ["7000", "7001"]);
    // `!reset` removed the volumes, `!override` replaced the labels.
    assert!(app.volumes.is_empty());
    assert!(
        project
            .document()
            .get("services")
            .unwrap()
            .get("app")
            .unwrap()
            .get("volumes")
            .is_none()
    );
    assert_eq!(
        app.labels,
        BTreeMap::from([("only".to_owned(), "this".to_owned())])
    );
    // Paths of the second file are relative to the project directory too.
    assert_eq!(build.context, BuildContext::Dir(dir.clone()));
    // Each merged value keeps the location of the file that set it.
    let image = app.image.as_ref().unwrap();
    assert_eq!(image.location.to_string(), "compose.prod.yaml:3:12");
    assert_eq!(
        app.environment["DEBUG"].location.to_string(),
        "compose.yaml:12:9"
    );
}

#[test]
fn override_tags_in_override_files() {
    let dir = project_dir(&[
        (
            "compose.yaml",
            "services:\n  s:\n    image: x\n    build:\n      context: .\n      args: {A: 1}\n    ports: ['80:80']\n    command: [a]\n",
        ),
        (
            "compose.override.yaml",
            "services:\n  s:\n    build: !reset null\n    ports: !override ['81:81']\n    command: !reset\n",
        ),
    ]);
    let project = load(dir.path(), &[], &[]).unwrap();
    let s = &project.services["s"];
    assert!(s.build.is_none());
    assert_eq!(s.ports.len(), 1);
    assert_eq!(s.ports[0].value.published.as_deref(), Some("81"));
    assert!(s.definition.get("command").is_none());
}

#[test]
fn profiles_enable_services() {
    let dir = fixtures().join("profiles");
    let names = |project: &Project| project.services.keys().cloned().collect::<Vec<_>>();

    let project = load(&dir, &[], &[]).unwrap();
    assert_eq!(names(&project), ["app"]);
    assert_eq!(project.disabled_services.len(), 2);

    let mut with_debug = options(&dir, &[], &[]);
    with_debug.profiles = vec!["debug".into()];
    assert_eq!(
        names(&Project::load(&with_debug).unwrap()),
        ["app", "debug", "tools"]
    );

    let project = load(&dir, &[], &[("COMPOSE_PROFILES", "tools")]).unwrap();
    assert_eq!(names(&project), ["app", "tools"]);

    let project = load(&dir, &[], &[("COMPOSE_PROFILES", "*")]).unwrap();
    assert_eq!(names(&project), ["app", "debug", "tools"]);

    // No profile: nothing disabled is built unless asked for by name.
    let project = load(&dir, &[], &[]).unwrap();
    assert!(project.build_requests(&[]).unwrap().is_empty());
    let requests = project.build_requests(&["tools"]).unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].service, "tools");
}

#[test]
fn include_imports_another_project() {
    let dir = fixtures().join("include");
    let project = load(&dir, &[], &[]).unwrap();
    let db = &project.services["db"];
    // The included project's own .env supplied PG_VERSION.
    assert_eq!(db.image.as_ref().unwrap().value, "postgres:16");
    // Its relative paths are relative to its own directory.
    let init = dir.join("db/init");
    assert_eq!(
        db.volumes[0].value.source.as_deref(),
        Some(init.to_str().unwrap())
    );
    assert_eq!(db.volumes[0].value.kind, MountKind::Bind);
    assert!(db.volumes[0].value.read_only);
    assert_eq!(
        project.services["app"].build.as_ref().unwrap().context,
        BuildContext::Dir(dir.clone())
    );
    assert!(project.document().get("include").is_none());
    // Errors inside an included file name that file.
    let db_location = &db.image.as_ref().unwrap().location;
    assert_eq!(db_location.to_string(), "db/compose.yaml:3:12");
}

#[test]
fn include_conflicts_and_cycles_are_errors() {
    let conflict = project_dir(&[
        (
            "compose.yaml",
            "include: [other.yaml]\nservices:\n  db:\n    image: mine\n",
        ),
        ("other.yaml", "services:\n  db:\n    image: theirs\n"),
    ]);
    let err = load(conflict.path(), &[], &[]).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("compose.yaml:3:3: services: included file "),
        "{message}"
    );
    assert!(
        message.ends_with("defines service \"db\", which conflicts with this file's definition"),
        "{message}"
    );

    let cycle = project_dir(&[
        ("compose.yaml", "include: [a.yaml]\nservices: {}\n"),
        ("a.yaml", "include: [b.yaml]\n"),
        ("b.yaml", "include: [a.yaml]\n"),
    ]);
    let err = load(cycle.path(), &[], &[]).unwrap_err();
    assert!(err.to_string().contains("circular `include`"), "{err}");
}

#[test]
fn extends_same_file_other_file_and_recursively() {
    let dir = fixtures().join("extends");
    let project = load(&dir, &[], &[]).unwrap();
    let app = &project.services["app"];
    assert_eq!(app.image.as_ref().unwrap().value, "acme/base");
    assert_eq!(app.environment["LEVEL"].value.as_deref(), Some("base"));
    assert_eq!(app.environment["EXTRA"].value.as_deref(), Some("1"));
    assert_eq!(app.labels["from"], "base");
    assert_eq!(app.ports.len(), 2);
    assert!(app.definition.get("extends").is_none());

    let worker = &project.services["worker"];
    let build = worker.build.as_ref().unwrap();
    // `build: ./ctx` is relative to common/services.yaml, which declared it.
    assert_eq!(build.context, BuildContext::Dir(dir.join("common/ctx")));
    assert_eq!(
        build.dockerfile,
        DockerfileSource::Path(dir.join("common/ctx/Dockerfile"))
    );
    assert_eq!(build.target.as_deref(), Some("worker"));
    assert_eq!(worker.environment["ROOT"].value.as_deref(), Some("1"));
    assert_eq!(
        json(&project, "/services/worker/command"),
        serde_json::json!(["worker", "--queue", "high"])
    );
}

#[test]
fn extends_cycle_is_a_located_error() {
    let dir = fixtures().join("invalid");
    let err = load(&dir, &["extends-cycle.yaml"], &[]).unwrap_err();
    insta::assert_snapshot!(err.to_string(), @"extends-cycle.yaml:4:14: services.a.extends: circular `extends`: extends-cycle.yaml:a -> extends-cycle.yaml:b -> extends-cycle.yaml:c -> extends-cycle.yaml:a");

    let missing = project_dir(&[("compose.yaml", "services:\n  a:\n    extends: nowhere\n")]);
    let err = load(missing.path(), &[], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "compose.yaml:3:14: services.a.extends: cannot extend service \"nowhere\": not found in compose.yaml"
    );
}

#[test]
fn project_name_precedence_and_normalisation() {
    let dir = project_dir(&[
        ("My Shop.v2/compose.yaml", "services:\n  s:\n    image: x\n"),
        (
            "named/compose.yaml",
            "name: From-File\nservices:\n  s:\n    image: x\n",
        ),
        ("named/.env", "COMPOSE_PROJECT_NAME=from-dotenv\n"),
        ("named/empty.env", ""),
    ]);
    let unnamed = dir.path().join("My Shop.v2");
    assert_eq!(load(&unnamed, &[], &[]).unwrap().name, "myshopv2");

    let named = dir.path().join("named");
    // .env's COMPOSE_PROJECT_NAME beats `name:`.
    assert_eq!(load(&named, &[], &[]).unwrap().name, "from-dotenv");
    assert_eq!(
        load(&named, &[], &[("COMPOSE_PROJECT_NAME", "from-env")])
            .unwrap()
            .name,
        "from-env"
    );
    let mut explicit = options(&named, &[], &[("COMPOSE_PROJECT_NAME", "from-env")]);
    explicit.project_name = Some("from-flag".into());
    assert_eq!(Project::load(&explicit).unwrap().name, "from-flag");
    // Without the .env, `name:` is used, normalised.
    let mut no_dotenv = options(&named, &[], &[]);
    no_dotenv.env_files = vec![named.join("empty.env")];
    assert_eq!(Project::load(&no_dotenv).unwrap().name, "from-file");

    explicit.project_name = Some("Bad Name".into());
    let err = Project::load(&explicit).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ProjectName {
                source_of_name: "-p",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn yaml_anchors_merge_keys_and_several_documents() {
    let dir = project_dir(&[(
        "compose.yaml",
        "x-common: &common\n  restart: always\n  environment: {A: '1'}\nservices:\n  a:\n    <<: *common\n    image: a\n  b:\n    <<: *common\n    image: b\n    restart: \"no\"\n---\nservices:\n  c:\n    image: c\n",
    )]);
    let project = load(dir.path(), &[], &[]).unwrap();
    assert_eq!(
        project.services["a"].restart.as_ref().unwrap().value,
        "always"
    );
    assert_eq!(project.services["b"].restart.as_ref().unwrap().value, "no");
    assert_eq!(
        project.services["b"].environment["A"].value.as_deref(),
        Some("1")
    );
    assert!(project.services.contains_key("c"));
}

// ---------------------------------------------------------------------------------------
// Validation

fn yaml_fixtures() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&fixtures(), &mut files);
    files.sort();
    files
}

fn raw_json(path: &Path) -> serde_json::Value {
    let file = SourceFile::new(path.to_owned(), path.parent().unwrap());
    let text = fs::read_to_string(path).unwrap();
    let documents = parse_documents(&text, &file).unwrap();
    assert_eq!(documents.len(), 1, "{}", path.display());
    documents[0].to_json()
}

#[test]
fn every_fixture_is_checked_against_the_real_schema() {
    let Some(conformance) = shared_conformance() else {
        eprintln!("skipping: shared/conformance not found beside the checkout");
        return;
    };
    let schema_text =
        fs::read_to_string(conformance.join("compose-spec/compose-spec.json")).unwrap();
    let schema_json: serde_json::Value = serde_json::from_str(&schema_text).unwrap();
    let validator = jsonschema::validator_for(&schema_json).unwrap();
    let files = yaml_fixtures();
    assert!(files.len() >= 14, "{files:?}");
    for path in files {
        let instance = raw_json(&path);
        let expected_valid = !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("schema-");
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert_eq!(
            errors.is_empty(),
            expected_valid,
            "{}: {errors:?}",
            path.display()
        );

        // kiln's embedded validator agrees with the jsonschema crate.
        let file = SourceFile::new(path.clone(), path.parent().unwrap());
        let document = parse_documents(&fs::read_to_string(&path).unwrap(), &file)
            .unwrap()
            .remove(0);
        let ours = schema::validate(&document);
        assert_eq!(
            ours.is_empty(),
            expected_valid,
            "{}: {ours:?}",
            path.display()
        );
    }
}

#[test]
fn embedded_schema_is_the_shared_one() {
    let Some(conformance) = shared_conformance() else {
        eprintln!("skipping: shared/conformance not found beside the checkout");
        return;
    };
    let shared = fs::read_to_string(conformance.join("compose-spec/compose-spec.json")).unwrap();
    assert_eq!(
        schema::SCHEMA_TEXT,
        shared,
        "update builder/src/frontend/compose/compose-spec.json"
    );
}

#[test]
fn schema_errors_are_located() {
    let dir = fixtures().join("invalid");
    let err = load(&dir, &["schema-typo.yaml"], &[]).unwrap_err();
    insta::assert_snapshot!(err.to_string(), @r#"schema-typo.yaml:6:7: services.api.build: additional property "dockerfil" is not allowed (did you mean "dockerfile"?)"#);

    let err = load(&dir, &["schema-types.yaml"], &[]).unwrap_err();
    insta::assert_snapshot!(err.to_string(), @r#"
    schema-types.yaml:5:7: services.api.ports: must be a list, found a mapping
    schema-types.yaml:8:9: services.api.depends_on.db: missing required property "condition"
    schema-types.yaml:11:14: services.db.restart: must be a string, found a list
    "#);
    assert_eq!(err.diagnostics().len(), 3);
    assert_eq!(
        err.diagnostics()[1].path.to_string(),
        "services.api.depends_on.db"
    );
}

#[test]
fn undefined_references_are_located() {
    let dir = fixtures().join("invalid");
    let err = load(&dir, &["undefined-references.yaml"], &[]).unwrap_err();
    insta::assert_snapshot!(err.to_string(), @r#"
    undefined-references.yaml:4:18: services.api.depends_on: depends on undefined service "cache"
    undefined-references.yaml:7:17: services.api.build.secrets: refers to undefined secret "nope"
    "#);
}

#[test]
fn unsupported_build_keys_are_located_errors() {
    let dir = fixtures().join("unsupported");
    let project = load(&dir, &[], &[]).unwrap();
    let err = project.build_requests(&["app", "remote"]).unwrap_err();
    insta::assert_snapshot!(err.to_string(), @r#"
    compose.yaml:5:18: services.app.build.isolation: not supported by kiln: build isolation "hyperv"
    compose.yaml:6:19: services.app.build.privileged: not supported by kiln: privileged builds
    compose.yaml:7:21: services.app.build.entitlements: not supported by kiln: build entitlements network.host
    compose.yaml:10:16: services.remote.build: git build contexts are not supported yet: https://github.com/acme/app.git#main
    "#);
    // `privileged: false` and `provenance: false` ask for nothing kiln lacks.
    let requests = project.build_requests(&["fine"]).unwrap();
    assert_eq!(requests.len(), 1);
    assert!(matches!(
        project.build_requests(&["nope"]),
        Err(Error::UnknownService { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// The bookshop

#[test]
fn bookshop_with_app_version_unset() {
    let dir = fixtures().join("bookshop");
    let project = load(&dir, &[], &[]).unwrap();
    assert_eq!(project.name, "bookshop");
    assert_eq!(
        project.services.keys().collect::<Vec<_>>(),
        ["api", "db", "web"]
    );

    let requests = project.build_requests(&[]).unwrap();
    let services: Vec<&str> = requests.iter().map(|r| r.service.as_str()).collect();
    assert_eq!(services, ["api", "web"]);

    let api = &requests[0];
    assert_eq!(api.context_dir, dir.join("api"));
    assert_eq!(
        api.dockerfile,
        DockerfileSource::Path(dir.join("api/Dockerfile"))
    );
    assert_eq!(api.target.as_deref(), Some("runtime"));
    assert_eq!(api.tags, ["localhost:5000/bookshop-api:dev"]);
    // PIP_INDEX_URL has no value and is not in the environment: left out.
    assert_eq!(
        api.args,
        BTreeMap::from([
            ("APP_VERSION".to_owned(), "dev".to_owned()),
            ("PYTHON_VERSION".to_owned(), "3.12".to_owned())
        ])
    );
    assert_eq!(api.labels["org.opencontainers.image.version"], "dev");
    assert_eq!(api.secrets.len(), 1);
    assert_eq!(api.secrets[0].id, "pip_token");
    assert_eq!(
        api.secrets[0].source,
        SecretSource::File(dir.join("secrets/pip_token.txt"))
    );
    assert_eq!(api.cache_from[0].kind, "registry");
    assert_eq!(
        api.cache_from[0].attr("ref"),
        Some("localhost:5000/bookshop-api:cache")
    );
    assert_eq!(api.cache_to[0].attr("mode"), Some("max"));
    assert_eq!(api.sbom, Some(true));
    assert_eq!(api.tag_scheme, Some(TagScheme::SemverSha));
    assert_eq!(api.version.as_deref(), Some("0.0.0"));

    let web = &requests[1];
    assert_eq!(web.tags, ["localhost:5000/bookshop-web:dev"]);
    assert_eq!(
        web.additional_contexts["api"],
        AdditionalContext::Service("api".to_owned())
    );
    assert_eq!(project.build_dependencies("web"), ["api"]);
    assert_eq!(
        project.service_by_image("localhost:5000/bookshop-api:dev"),
        Some("api")
    );
    assert_eq!(project.service_by_image("postgres:16"), None);

    // Selecting web pulls in api, which it builds on.
    let selected = project.build_requests(&["web"]).unwrap();
    assert_eq!(
        selected
            .iter()
            .map(|r| r.service.as_str())
            .collect::<Vec<_>>(),
        ["api", "web"]
    );
    // db has no build: nothing to build.
    assert!(project.build_requests(&["db"]).unwrap().is_empty());

    // The rest of the model, for `kiln lint`.
    let api_service = &project.services["api"];
    let dependency = &api_service.depends_on["db"];
    assert_eq!(dependency.condition, DependencyCondition::Healthy);
    assert!(dependency.required);
    let healthcheck = api_service.healthcheck.as_ref().unwrap();
    assert_eq!(healthcheck.interval.as_deref(), Some("10s"));
    assert_eq!(healthcheck.retries, Some(5));
    assert_eq!(healthcheck.test.as_ref().unwrap()[0], "CMD");
    assert_eq!(
        api_service.ports[0].value.published.as_deref(),
        Some("8000")
    );
    assert_eq!(
        api_service.restart.as_ref().unwrap().value,
        "unless-stopped"
    );
    assert_eq!(
        api_service.environment["DATABASE_URL"].value.as_deref(),
        Some("postgresql://bookshop:s3cret@db:5432/bookshop")
    );
    assert_eq!(
        api_service.environment["LOG_LEVEL"].value.as_deref(),
        Some("debug")
    );
    let db = &project.services["db"];
    assert_eq!(db.image.as_ref().unwrap().value, "postgres:16");
    assert!(db.build.is_none());
    assert_eq!(db.volumes[0].value.source.as_deref(), Some("pgdata"));
    assert_eq!(project.volumes, ["pgdata"]);
}

#[test]
fn bookshop_with_app_version_set() {
    let dir = fixtures().join("bookshop");
    let env = [
        ("APP_VERSION", "1.4.2"),
        ("REGISTRY", "ghcr.io/acme"),
        ("PIP_INDEX_URL", "https://pypi.internal/simple"),
        ("LOG_LEVEL", "warning"),
    ];
    let project = load(&dir, &[], &env).unwrap();
    let requests = project.build_requests(&["api"]).unwrap();
    assert_eq!(requests.len(), 1);
    let api = &requests[0];
    assert_eq!(api.tags, ["ghcr.io/acme/bookshop-api:1.4.2"]);
    assert_eq!(api.args["APP_VERSION"], "1.4.2");
    assert_eq!(api.args["PIP_INDEX_URL"], "https://pypi.internal/simple");
    assert_eq!(
        api.cache_from[0].attr("ref"),
        Some("ghcr.io/acme/bookshop-api:cache")
    );
    assert_eq!(api.version.as_deref(), Some("1.4.2"));
    // The shell beats .env.
    assert_eq!(
        project.services["api"].environment["LOG_LEVEL"]
            .value
            .as_deref(),
        Some("warning")
    );
    assert_eq!(
        project.service_by_image("ghcr.io/acme/bookshop-web:1.4.2"),
        Some("web")
    );
}

#[test]
fn lock_output_is_canonical_pinned_and_loads_again() {
    let dir = fixtures().join("bookshop");
    let project = load(&dir, &[], &[("APP_VERSION", "1.4.2")]).unwrap();
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let pins = BTreeMap::from([
        ("db".to_owned(), format!("postgres:16@{digest}")),
        (
            "api".to_owned(),
            format!("localhost:5000/bookshop-api:1.4.2@{digest}"),
        ),
    ]);
    let yaml = project.to_yaml_with_pins(&pins);
    assert!(
        yaml.starts_with("name: bookshop\nservices:\n  api:\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains(&format!("    image: postgres:16@{digest}\n")),
        "{yaml}"
    );
    assert!(yaml.contains("      dockerfile: Dockerfile\n"), "{yaml}");
    assert!(!yaml.contains("${"), "{yaml}");

    // The lock file is itself a compose file that loads to the same build.
    let out = project_dir(&[("compose.lock.yaml", &yaml)]);
    let locked = load(out.path(), &["compose.lock.yaml"], &[]).unwrap();
    assert_eq!(locked.name, "bookshop");
    assert_eq!(
        locked.services["db"].image.as_ref().unwrap().value,
        format!("postgres:16@{digest}")
    );
    let original = project.build_requests(&["web"]).unwrap();
    let again = locked.build_requests(&["web"]).unwrap();
    assert_eq!(original[1], again[1]);
    assert_eq!(original[0].args, again[0].args);
    assert_eq!(
        again[0].tags[0],
        format!("localhost:5000/bookshop-api:1.4.2@{digest}")
    );
    // The canonical output is stable.
    assert_eq!(locked.to_yaml_with_pins(&pins), yaml);
}

#[test]
fn build_keys_in_all_their_forms() {
    let dir = project_dir(&[
        ("app/Dockerfile", "FROM alpine:3.20\n"),
        ("shared/README", "shared files\n"),
        ("secret.txt", "s\n"),
        (
            "compose.yaml",
            concat!(
                "services:\n",
                "  base:\n",
                "    build:\n",
                "      context: app\n",
                "      dockerfile_inline: |\n        FROM alpine:3.20\n        RUN true\n",
                "  app:\n",
                "    build:\n",
                "      context: app\n",
                "      dockerfile: ../app/Dockerfile\n",
                "      args: [WITH=1, FROM_ENV, MISSING]\n",
                "      labels: [a=1, b]\n",
                "      tags: [extra/app:1, extra/app:1]\n",
                "      additional_contexts:\n",
                "        - base=service:base\n",
                "        - files=./shared\n",
                "        - alpine=docker-image://alpine:3.20\n",
                "      secrets:\n",
                "        - source: env_secret\n          target: token\n          mode: 0400\n",
                "        - file_secret\n",
                "      cache_from: [user/app:cache]\n",
                "      platforms: [linux/amd64, linux/arm64]\n",
                "      pull: true\n",
                "      no_cache: \"true\"\n",
                "      network: none\n",
                "      shm_size: 2g\n",
                "      extra_hosts:\n        db: 10.0.0.2\n        many: [10.0.0.3, 10.0.0.4]\n",
                "      ssh: [default, \"deploy=/keys/a,/keys/b\"]\n",
                "      sbom: false\n",
                "      x-kiln:\n        outputs: [\"type=oci,dest=out/app.tar\"]\n",
                "secrets:\n",
                "  env_secret:\n    environment: TOKEN\n",
                "  file_secret:\n    file: ./secret.txt\n",
            ),
        ),
    ]);
    let env = [("FROM_ENV", "env-value"), ("TOKEN", "hunter2")];
    let project = load(dir.path(), &[], &env).unwrap();
    let requests = project.build_requests(&["app"]).unwrap();
    assert_eq!(
        requests
            .iter()
            .map(|r| r.service.as_str())
            .collect::<Vec<_>>(),
        ["base", "app"]
    );
    let root = project.working_dir.clone();

    let base = &requests[0];
    assert_eq!(
        base.dockerfile,
        DockerfileSource::Inline("FROM alpine:3.20\nRUN true\n".into())
    );
    assert_eq!(base.tags, [format!("{}-base", project.name)]);

    let app = &requests[1];
    assert_eq!(
        app.dockerfile,
        DockerfileSource::Path(root.join("app/Dockerfile"))
    );
    assert_eq!(
        app.args,
        BTreeMap::from([
            ("FROM_ENV".to_owned(), "env-value".to_owned()),
            ("WITH".to_owned(), "1".to_owned())
        ])
    );
    assert_eq!(app.labels["b"], "");
    assert_eq!(
        app.tags,
        [format!("{}-app", project.name), "extra/app:1".to_owned()]
    );
    assert_eq!(
        app.additional_contexts["base"],
        AdditionalContext::Service("base".into())
    );
    assert_eq!(
        app.additional_contexts["files"],
        AdditionalContext::Path(root.join("shared"))
    );
    assert_eq!(
        app.additional_contexts["alpine"],
        AdditionalContext::Image("alpine:3.20".into())
    );
    assert_eq!(app.secrets[0].id, "env_secret");
    assert_eq!(app.secrets[0].target.as_deref(), Some("token"));
    assert_eq!(app.secrets[0].mode, Some(0o400));
    match &app.secrets[0].source {
        SecretSource::Environment { variable, value } => {
            assert_eq!(variable, "TOKEN");
            assert_eq!(value.expose(), "hunter2");
        }
        other => panic!("unexpected secret source {other:?}"),
    }
    assert!(!format!("{app:?}").contains("hunter2"));
    assert_eq!(
        app.secrets[1].source,
        SecretSource::File(root.join("secret.txt"))
    );
    assert_eq!(app.cache_from[0].attr("ref"), Some("user/app:cache"));
    assert_eq!(app.platforms, ["linux/amd64", "linux/arm64"]);
    assert!(app.pull && app.no_cache);
    assert_eq!(app.network.as_deref(), Some("none"));
    assert_eq!(app.shm_size, Some(2 << 30));
    let hosts: Vec<(&str, &str)> = app
        .extra_hosts
        .iter()
        .map(|h| (h.host.as_str(), h.ip.as_str()))
        .collect();
    assert_eq!(
        hosts,
        [
            ("db", "10.0.0.2"),
            ("many", "10.0.0.3"),
            ("many", "10.0.0.4")
        ]
    );
    assert_eq!(app.ssh[0].id, "default");
    assert_eq!(app.ssh[1].paths, ["/keys/a", "/keys/b"]);
    assert_eq!(app.sbom, Some(false));
    assert_eq!(app.outputs[0].kind, "oci");
    assert_eq!(
        app.outputs[0].attr("dest"),
        Some(root.join("out/app.tar").to_str().unwrap())
    );

    // An environment secret whose variable is unset stops the build of that service.
    let project = load(dir.path(), &[], &[]).unwrap();
    let err = project.build_requests(&["app"]).unwrap_err();
    assert!(
        err.to_string()
            .contains("environment variable TOKEN for secret \"env_secret\" is not set"),
        "{err}"
    );
}

#[test]
fn external_secrets_and_bad_values_are_refused() {
    let dir = project_dir(&[
        ("Dockerfile", "FROM alpine:3.20\n"),
        (
            "compose.yaml",
            "services:\n  app:\n    build:\n      context: .\n      secrets: [vault]\n      cache_to: [\"mode=max\"]\nsecrets:\n  vault:\n    external: true\n",
        ),
    ]);
    let err = load(dir.path(), &[], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "compose.yaml:6:18: services.app.build.cache_to: invalid cache spec \"mode=max\": missing type="
    );
    fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  app:\n    build:\n      context: .\n      secrets: [vault]\nsecrets:\n  vault:\n    external: true\n",
    )
    .unwrap();
    let project = load(dir.path(), &[], &[]).unwrap();
    let err = project.build_requests(&[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "compose.yaml:5:17: services.app.build.secrets: secret \"vault\" is external; kiln can only use secrets with a `file` or `environment` source"
    );
}

#[test]
fn dependency_cycles_between_services_are_errors() {
    let dir = project_dir(&[(
        "compose.yaml",
        "services:\n  a:\n    build:\n      context: .\n      additional_contexts: {b: 'service:b'}\n  b:\n    build:\n      context: .\n      additional_contexts: {a: 'service:a'}\n",
    )]);
    let project = load(dir.path(), &[], &[]).unwrap();
    let err = project.build_requests(&["a"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "services depend on each other in a cycle: a -> b -> a"
    );
}
