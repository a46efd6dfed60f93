//! Dockerfile frontend speed: parsing, typing and resolving a generated
//! 1,000-line Dockerfile (multi-stage, continuations, heredocs, mounts, ARG/ENV
//! expansion). Criterion reports the time per file; divide by 1,000 for the time
//! per line.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_builder::frontend::dockerfile::{self, Dockerfile, ResolveOptions};

const LINES: usize = 1000;

/// A realistic Dockerfile of exactly `LINES` lines.
fn generate() -> String {
    let mut lines: Vec<String> = vec![
        "# syntax=docker/dockerfile:1".into(),
        "ARG BASE=debian:bookworm-slim".into(),
        "ARG VERSION=1.2.3".into(),
    ];
    let mut stage = 0;
    while lines.len() < LINES {
        lines.push(format!("FROM ${{BASE}} AS stage{stage}"));
        lines.push("ARG VERSION".into());
        lines.push(format!(
            "ENV APP_HOME=/opt/app{stage} PATH=/opt/app{stage}/bin:$PATH"
        ));
        lines.push(format!(
            "LABEL org.opencontainers.image.version=\"$VERSION\" stage={stage}"
        ));
        lines.push("WORKDIR $APP_HOME".into());
        lines.push("RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\".into());
        lines.push("    apt-get update && \\".into());
        lines.push(
            "    apt-get install -y --no-install-recommends curl ca-certificates && \\".into(),
        );
        lines.push("    rm -rf /var/lib/apt/lists/*".into());
        lines.push(
            "COPY --chown=1000:1000 --chmod=0755 [\"src/\", \"lib/\", \"$APP_HOME/\"]".into(),
        );
        lines.push("RUN <<EOF".into());
        lines.push("set -eux".into());
        lines.push("echo \"building ${VERSION}\" > /version".into());
        lines.push("EOF".into());
        if stage > 0 {
            lines.push(format!(
                "COPY --from=stage{} /version /prev-version",
                stage - 1
            ));
        }
        lines.push("EXPOSE 8080/tcp 9090".into());
        lines.push("USER 1000:1000".into());
        lines.push(
            "HEALTHCHECK --interval=30s --timeout=3s CMD curl -f http://localhost:8080/".into(),
        );
        lines.push("CMD [\"/opt/app/bin/server\", \"--port\", \"8080\"]".into());
        lines.push(String::new());
        stage += 1;
    }
    lines.truncate(LINES);
    lines.join("\n") + "\n"
}

fn bench(c: &mut Criterion) {
    let text = generate();
    assert_eq!(text.lines().count(), LINES);
    let mut group = c.benchmark_group("dockerfile_1000_lines");
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("parse", |b| {
        b.iter(|| dockerfile::parse(black_box(&text), "Dockerfile").expect("parses"))
    });
    let ast = dockerfile::parse(&text, "Dockerfile").expect("parses");
    group.bench_function("from_ast", |b| {
        b.iter(|| Dockerfile::from_ast(black_box(&ast)).expect("types"))
    });
    let typed = Dockerfile::from_ast(&ast).expect("types");
    let options = ResolveOptions::default();
    group.bench_function("resolve_all_stages", |b| {
        b.iter(|| typed.resolve(black_box(&options)).expect("resolves"))
    });
    group.bench_function("parse_type_resolve", |b| {
        b.iter(|| {
            dockerfile::load(black_box(&text), "Dockerfile")
                .and_then(|d| d.resolve(&options))
                .expect("builds")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
