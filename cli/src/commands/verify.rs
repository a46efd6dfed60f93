//! `kiln verify [build options] --against REF | --twice`: is the image
//! reproducible from its source, and if not, what differs.
//!
//! `--against REF` rebuilds from the context (in a fresh store, no cache) with
//! the inputs the published image recorded, the user's flags winning, and
//! compares; `--twice` builds twice, each in its own fresh store, and compares.
//! The report (text, or `--format json`) goes to stdout; build progress to
//! stderr. Exit codes: 0 equal, 1 different, 2 the verification could not be
//! done (bad flags, a failed build, a registry failure).

use kiln_builder::executor::CancelToken;
use kiln_builder::platform::Platform;
use kiln_builder::progress::Reporter;
use kiln_builder::store::Store;
use kiln_builder::verify::{
    self, FileChange, FileChangeKind, Given, ImageSide, Input, LayerReport, LayerStatus, Report,
};

use super::Failure;
use super::build::{BuildInputs, build_failure, parse_format};
use super::sbom::source_of;
use crate::printer::Printer;
use crate::progress;

/// Files listed per layer in the text report (`--format json` lists all).
const FILES_SHOWN: usize = 50;

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// A readable report
    Text,
    /// The report as one JSON document
    Json,
}

#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("mode").required(true).args(["against", "twice"])),
    after_help = "Without SOURCE_DATE_EPOCH an image's `created` and the mtimes of \
files RUN writes differ from build to build by design. --twice uses --source-date-epoch \
(or $SOURCE_DATE_EPOCH) when given, else the context's last git commit time, else 0; \
--against uses the value the published image's SBOM recorded, else its config's \
`created`. The report lists every input and where it came from.\n\n\
Exit codes: 0 equal, 1 different, 2 the verification could not be done."
)]
pub struct Args {
    #[command(flatten)]
    pub inputs: BuildInputs,
    /// Rebuild and compare with this published image: a registry reference
    /// (always fetched from its registry) or `oci:PATH[:NAME]` for an OCI layout
    /// (a kiln store is one)
    #[arg(long, value_name = "REF")]
    pub against: Option<String>,
    /// Build twice, each time into a fresh store with no cache, and compare
    #[arg(long)]
    pub twice: bool,
    /// Report format
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Image media types of the build(s): oci or docker (default: the published
    /// image's; oci with --twice)
    #[arg(long = "image-format", value_name = "oci|docker")]
    pub image_format: Option<String>,
}

fn verify_failure(error: &verify::Error) -> Failure {
    match error {
        verify::Error::Build(build) => build_failure(build),
        other => Failure::from_error(other),
    }
}

/// Runs the builds and compares; every failure here is "could not verify".
fn produce(args: &Args, printer: &Printer) -> Result<Report, Failure> {
    let mut request = args.inputs.request()?;
    if let Some(format) = &args.image_format {
        request.format = parse_format(format, "--image-format")?;
    }
    let store = Store::open_default()?;
    let reporter = progress::reporter(args.inputs.progress);
    let cancel = CancelToken::new();
    crate::signals::cancel_on_interrupt(&cancel);
    let failure = |e: verify::Error| verify_failure(&e);
    match &args.against {
        Some(against) => {
            let platform = request.platform.clone().unwrap_or_else(Platform::host);
            let published = verify::published(
                &store,
                &source_of(against),
                &platform,
                &args.inputs.insecure_registries,
            )
            .map_err(failure)?;
            let given = Given {
                source_date_epoch: args.inputs.source_date_epoch.is_some(),
                target: args.inputs.target.is_some(),
                format: args.image_format.is_some(),
                compression: args.inputs.compression.is_some(),
                platform: args.inputs.platform.is_some(),
            };
            let mut inputs = verify::rebuild_inputs(&mut request, given, &published);
            match &published.recorded.sbom {
                Some(digest) => printer.info(&format!(
                    "{}: {} (inputs from its SBOM {})",
                    published.label,
                    published.info.manifest_digest,
                    verify::short(digest)
                )),
                None => printer.warn(&format!(
                    "{}: no kiln SBOM found, so no recorded build args, target or base digests; \
                     SOURCE_DATE_EPOCH comes from its `created`",
                    published.label
                )),
            }
            let dockerfile = verify::dockerfile_digest(&request).map_err(failure)?;
            if let Some(recorded) = &published.recorded.dockerfile_digest
                && *recorded != dockerfile.to_string()
            {
                printer.warn(&format!(
                    "the Dockerfile ({dockerfile}) is not the one the published image was built \
                     from ({recorded})"
                ));
            }
            inputs.push(Input {
                name: "Dockerfile".to_owned(),
                value: dockerfile.to_string(),
                from: "context".to_owned(),
            });
            announce(&inputs, printer);
            request.name = "rebuild".to_owned();
            let rebuilt =
                verify::isolated_build(&store, &request, &reporter, &cancel).map_err(failure)?;
            let left = ImageSide::from_info(
                format!("published {}", published.label),
                &published.blobs,
                &published.info,
            )
            .map_err(failure)?;
            let right = ImageSide::from_build("rebuilt", &rebuilt.store, &rebuilt.output)
                .map_err(failure)?;
            let mut report = verify::compare(&left, &right, &reporter).map_err(failure)?;
            report.inputs = inputs;
            Ok(report)
        }
        None => {
            let mut inputs = Vec::new();
            let epoch = match request.source_date_epoch {
                Some(epoch) => (epoch, "flag"),
                None => verify::default_source_date_epoch(&request),
            };
            request.source_date_epoch = Some(epoch.0);
            inputs.push(Input {
                name: "SOURCE_DATE_EPOCH".to_owned(),
                value: epoch.0.to_string(),
                from: epoch.1.to_owned(),
            });
            for (name, value) in &request.build_args {
                inputs.push(Input {
                    name: format!("build-arg {name}"),
                    value: value.clone(),
                    from: "flag".to_owned(),
                });
            }
            announce(&inputs, printer);
            let first = twice_build(&store, &request, "build-1", &reporter, &cancel)?;
            let second = twice_build(&store, &request, "build-2", &reporter, &cancel)?;
            let left =
                ImageSide::from_build("build 1", &first.store, &first.output).map_err(failure)?;
            let right =
                ImageSide::from_build("build 2", &second.store, &second.output).map_err(failure)?;
            let mut report = verify::compare(&left, &right, &reporter).map_err(failure)?;
            report.inputs = inputs;
            Ok(report)
        }
    }
}

fn twice_build(
    store: &Store,
    request: &kiln_builder::build::BuildRequest,
    name: &str,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<verify::IsolatedBuild, Failure> {
    let mut request = request.clone();
    request.name = name.to_owned();
    verify::isolated_build(store, &request, reporter, cancel).map_err(|e| verify_failure(&e))
}

/// Says on stderr which inputs the build(s) use, before building.
fn announce(inputs: &[Input], printer: &Printer) {
    for input in inputs {
        printer.info(&format!(
            "input {} = {} ({})",
            input.name,
            input.value,
            from_text(&input.from)
        ));
    }
}

fn from_text(from: &str) -> &str {
    match from {
        "flag" => "given",
        "sbom" => "recorded in the published SBOM",
        "config" => "the published config's created",
        "manifest" => "as published",
        "git" => "the context's last git commit",
        "context" => "the build context",
        _ => "default",
    }
}

fn json_text(value: &Option<serde_json::Value>) -> String {
    match value {
        None => "(absent)".to_owned(),
        Some(value) => serde_json::to_string(value).expect("JSON values serialise"),
    }
}

fn file_line(change: &FileChange) -> String {
    match change.change {
        FileChangeKind::Added => {
            let meta = change.right.as_ref();
            format!(
                "+ {}  added ({})",
                change.path,
                meta.map(describe_meta).unwrap_or_default()
            )
        }
        FileChangeKind::Removed => {
            let meta = change.left.as_ref();
            format!(
                "- {}  removed ({})",
                change.path,
                meta.map(describe_meta).unwrap_or_default()
            )
        }
        FileChangeKind::Changed => {
            let attributes: Vec<String> = change
                .attributes
                .iter()
                .map(|a| format!("{}: {} -> {}", a.attribute, a.left, a.right))
                .collect();
            format!("~ {}  {}", change.path, attributes.join("; "))
        }
    }
}

fn describe_meta(meta: &verify::FileMeta) -> String {
    let mut text = format!("{} {} {}:{}", meta.kind, meta.mode, meta.uid, meta.gid);
    if let Some(sha) = &meta.sha256 {
        text.push_str(&format!(", {} bytes {sha}", meta.size));
    }
    if let Some(link) = &meta.link {
        text.push_str(&format!(" -> {link}"));
    }
    text
}

fn layer_heading(layer: &LayerReport) -> String {
    let status = match layer.status {
        LayerStatus::Equal => "equal",
        LayerStatus::Recompressed => "RECOMPRESSED (same files)",
        LayerStatus::Different => "DIFFERENT",
        LayerStatus::OnlyLeft => "ONLY LEFT",
        LayerStatus::OnlyRight => "ONLY RIGHT",
    };
    let instruction = layer
        .instruction
        .as_deref()
        .map(|text| {
            // A heredoc's body is not the heading; its first line names it.
            let mut lines = text.lines();
            let first = lines.next().unwrap_or("");
            if lines.next().is_some() {
                format!("{first} …")
            } else {
                first.to_owned()
            }
        })
        .unwrap_or_else(|| "(unknown instruction)".to_owned());
    let mut place = Vec::new();
    if let Some(source) = &layer.source {
        place.push(source.clone());
    }
    if let Some(stage) = &layer.stage {
        place.push(format!("stage {stage}"));
    }
    if let Some(base) = &layer.base_image {
        place.push(format!("base {base}"));
    }
    let place = if place.is_empty() {
        String::new()
    } else {
        format!("  ({})", place.join(", "))
    };
    format!("layer {}: {status}: {instruction}{place}", layer.index)
}

/// The report as text.
fn text(report: &Report) -> String {
    let mut out = Vec::new();
    let (left, right) = (&report.left, &report.right);
    if report.equal {
        out.push(format!(
            "EQUAL: {} and {} are both {}",
            left.label, right.label, left.digest
        ));
    } else {
        out.push(format!(
            "DIFFERENT: {} of {} layers, {} config fields, {} manifest fields differ",
            report.differing_layers(),
            report.layers.len(),
            report.config.len(),
            report.manifest.len()
        ));
        out.push(format!("  {}: {}", left.label, left.digest));
        out.push(format!("  {}: {}", right.label, right.digest));
    }
    if !report.inputs.is_empty() {
        out.push("inputs:".to_owned());
        for input in &report.inputs {
            out.push(format!(
                "  {} = {}  ({})",
                input.name,
                input.value,
                from_text(&input.from)
            ));
        }
    }
    if report.equal {
        return out.join("\n");
    }
    out.push(format!("layers ({} | {}):", left.label, right.label));
    for layer in &report.layers {
        out.push(format!("  {}", layer_heading(layer)));
        if layer.status == LayerStatus::Equal {
            continue;
        }
        let digest = |side: &Option<verify::LayerSide>| {
            side.as_ref()
                .map_or_else(|| "-".to_owned(), |s| s.digest.clone())
        };
        out.push(format!(
            "    {} | {}",
            digest(&layer.left),
            digest(&layer.right)
        ));
        for change in layer.files.iter().take(FILES_SHOWN) {
            out.push(format!("    {}", file_line(change)));
        }
        if layer.files.len() > FILES_SHOWN {
            out.push(format!(
                "    … and {} more (--format json lists them all)",
                layer.files.len() - FILES_SHOWN
            ));
        }
        if layer.status == LayerStatus::Different && layer.files.is_empty() {
            out.push(if layer.entry_order_differs {
                "    every file is equal; the entries come in another order".to_owned()
            } else {
                "    every file is equal; the tar headers differ in fields kiln does not compare"
                    .to_owned()
            });
        }
    }
    if !report.config.is_empty() {
        out.push(format!("config ({} | {}):", left.label, right.label));
        for change in &report.config {
            out.push(format!(
                "  {}: {} | {}",
                change.path,
                json_text(&change.left),
                json_text(&change.right)
            ));
        }
    }
    if !report.manifest.is_empty() {
        out.push(format!("manifest ({} | {}):", left.label, right.label));
        for change in &report.manifest {
            out.push(format!(
                "  {}: {} | {}",
                change.path,
                json_text(&change.left),
                json_text(&change.right)
            ));
        }
    }
    out.join("\n")
}

pub fn run(args: Args, printer: &Printer) -> Result<(), Failure> {
    // Exit code 1 means "different"; anything that stops the verification is 2.
    let report = produce(&args, printer).map_err(|failure| failure.with_exit_code(2))?;
    match args.format {
        ReportFormat::Text => printer.data(&text(&report)),
        ReportFormat::Json => {
            printer.data(&serde_json::to_string_pretty(&report).expect("the report serialises"))
        }
    }
    if report.equal {
        return Ok(());
    }
    Err(Failure::new(format!(
        "{} and {} differ: {} of {} layers, {} config fields",
        report.left.label,
        report.right.label,
        report.differing_layers(),
        report.layers.len(),
        report.config.len()
    ))
    .with_hint(if args.twice {
        "the build is not reproducible; the report on stdout names the layers, files and \
         instructions"
    } else {
        "the rebuild does not match; the report on stdout names the layers, files and \
         instructions"
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_report_names_layer_instruction_and_file() {
        let report: Report = serde_json::from_value(serde_json::json!({
            "equal": false,
            "left": {"label": "build 1", "digest": "sha256:a", "media_type": "m", "config_digest": "sha256:c", "layers": 2},
            "right": {"label": "build 2", "digest": "sha256:b", "media_type": "m", "config_digest": "sha256:d", "layers": 2},
            "manifest": [],
            "config": [{"path": "config.Env.MODE", "left": "a", "right": "b"}],
            "layers": [
                {"index": 0, "status": "equal", "instruction": "ADD rootfs"},
                {"index": 1, "status": "different", "instruction": "RUN date > /stamp", "source": "Dockerfile:3",
                 "left": {"digest": "sha256:1", "diff_id": "sha256:1", "size": 1, "media_type": "m"},
                 "right": {"digest": "sha256:2", "diff_id": "sha256:2", "size": 1, "media_type": "m"},
                 "files": [{"path": "stamp", "change": "changed",
                            "attributes": [{"attribute": "content", "left": "4 bytes sha256:x", "right": "4 bytes sha256:y"}]}]}
            ]
        }))
        .unwrap();
        let text = text(&report);
        assert!(
            text.starts_with("DIFFERENT: 1 of 2 layers, 1 config fields"),
            "{text}"
        );
        assert!(
            text.contains("layer 1: DIFFERENT: RUN date > /stamp  (Dockerfile:3)"),
            "{text}"
        );
        assert!(
            text.contains("~ stamp  content: 4 bytes sha256:x -> 4 bytes sha256:y"),
            "{text}"
        );
        assert!(text.contains("config.Env.MODE: \"a\" | \"b\""), "{text}");
    }
}
