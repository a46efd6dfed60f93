//! Build stages: the typed Dockerfile, its stages and how they refer to each other.
//!
//! Contract: [`Dockerfile::from_ast`] groups typed instructions into stages (each
//! FROM starts one; only ARG may come before the first, as global ARGs) and finds
//! which earlier stages each stage uses through `COPY --from` and `RUN --mount
//! from=`. A `--from` value that is neither a stage name (case-insensitive) nor a
//! stage index is an image reference, as in BuildKit. A FROM whose base names an
//! earlier stage builds on that stage; any other base is an image (or `scratch`).
//!
//! Errors: instructions before the first FROM, no FROM at all, duplicate stage
//! names, a stage used before it is defined (forward reference), a stage using
//! itself (circular dependency), a stage index out of range, plus every error of
//! the instruction layer.

use super::ast::Ast;
use super::error::{Error, ErrorKind, Location};
use super::instructions::{Context, Instruction, Parsed, parse_node};

/// A Dockerfile as typed stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The file name used in locations.
    pub file: String,
    /// The escape character (`\` or `` ` ``), needed for expansion.
    pub escape: char,
    /// ARG instructions before the first FROM.
    pub global_args: Vec<Command>,
    pub stages: Vec<Stage>,
    /// Accepted but worth telling the user (deprecated MAINTAINER, empty
    /// continuation lines).
    pub warnings: Vec<(Location, String)>,
    /// The notice for an accepted `# syntax=` directive (kiln builds it natively).
    pub syntax_notice: Option<String>,
}

/// An instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub instruction: Instruction,
    pub location: Location,
    /// The instruction's logical line as written (e.g. `RUN pip install x`).
    pub source: String,
}

/// A build stage: a FROM line and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages, from 0.
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The FROM base as written (may use global ARGs).
    pub base_name: String,
    /// The base when `base_name` uses no variables; otherwise known after
    /// [`Dockerfile::resolve`](super::Dockerfile::resolve).
    pub base: Option<Base>,
    /// `--platform` as written.
    pub platform: Option<String>,
    pub location: Location,
    /// The FROM line as written.
    pub source: String,
    pub commands: Vec<Command>,
    /// Earlier stages used by `COPY --from` or `RUN --mount from=`, in order of
    /// first use, without repeats.
    pub uses: Vec<usize>,
}

impl Stage {
    /// The name, or the index as text for unnamed stages.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Base {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// An image reference as written after expansion (not normalised).
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// Go's `strconv.Atoi`: optional sign and decimal digits.
fn parse_go_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// How stage `current` refers to `value` (a `--from`): `Some(stage)` or, when no
/// stage has that name or index, `None` (an image).
pub(crate) fn stage_reference(
    stages: &[Stage],
    current: usize,
    value: &str,
) -> Result<Option<usize>, ErrorKind> {
    let target = match parse_go_int(value) {
        Some(index) => {
            if index < 0 || index as u64 >= stages.len() as u64 {
                return Err(ErrorKind::InvalidStageIndex {
                    index,
                    count: stages.len(),
                });
            }
            index as usize
        }
        None => {
            let lower = value.to_lowercase();
            match stages
                .iter()
                .position(|s| s.name.as_deref() == Some(lower.as_str()))
            {
                Some(index) => index,
                None => return Ok(None),
            }
        }
    };
    if target == current {
        return Err(ErrorKind::CircularDependency {
            stage: stages[current].display_name(),
        });
    }
    if target > current {
        return Err(ErrorKind::ForwardStageReference {
            name: value.to_string(),
            defined_line: stages[target].location.line,
        });
    }
    Ok(Some(target))
}

/// Which stage (if any) a FROM base names among the stages before it.
pub(crate) fn base_of(earlier: &[Stage], name: &str) -> Base {
    let lower = name.to_lowercase();
    if let Some(index) = earlier
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        return Base::Stage(index);
    }
    if name == "scratch" {
        Base::Scratch
    } else {
        Base::Image(name.to_string())
    }
}

impl Dockerfile {
    /// Types and groups the instructions of a parsed Dockerfile into stages.
    pub fn from_ast(ast: &Ast) -> Result<Dockerfile, Error> {
        let syntax_notice = super::syntax::check(ast)?;
        let ctx = Context { file: &ast.file };
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        let mut warnings: Vec<(Location, String)> = ast
            .warnings
            .iter()
            .map(|w| (ctx.location(w.position), w.message.clone()))
            .collect();

        for node in &ast.nodes {
            let location = ctx.location(node.span.start);
            match parse_node(&ctx, node, &node.heredocs)? {
                Parsed::From(from) => {
                    if let Some(name) = &from.name
                        && let Some(first) = stages
                            .iter()
                            .find(|s| s.name.as_deref() == Some(name.as_str()))
                    {
                        return Err(Error::new(
                            location,
                            ErrorKind::DuplicateStageName {
                                name: name.clone(),
                                first_line: first.location.line,
                            },
                        ));
                    }
                    stages.push(Stage {
                        index: stages.len(),
                        name: from.name,
                        base_name: from.base,
                        base: None,
                        platform: from.platform,
                        location,
                        source: node.original.clone(),
                        commands: Vec::new(),
                        uses: Vec::new(),
                    });
                }
                Parsed::Instruction(instruction) => {
                    if matches!(instruction, Instruction::Maintainer(_)) {
                        warnings.push((
                            location.clone(),
                            "MAINTAINER is deprecated: use LABEL org.opencontainers.image.authors=…"
                                .to_string(),
                        ));
                    }
                    let is_arg = matches!(instruction, Instruction::Arg(_));
                    let command = Command {
                        instruction,
                        location,
                        source: node.original.clone(),
                    };
                    match stages.last_mut() {
                        Some(stage) => stage.commands.push(command),
                        None if is_arg => global_args.push(command),
                        None => {
                            return Err(Error::new(
                                command.location,
                                ErrorKind::InstructionBeforeFrom {
                                    instruction: node.name.to_uppercase(),
                                },
                            ));
                        }
                    }
                }
            }
        }
        if stages.is_empty() {
            let location = global_args
                .last()
                .map_or_else(|| Location::file(&ast.file), |c| c.location.clone());
            return Err(Error::new(location, ErrorKind::NoStages));
        }

        for i in 0..stages.len() {
            if !stages[i].base_name.contains('$') {
                let base = base_of(&stages[..i], &stages[i].base_name);
                stages[i].base = Some(base);
            }
            let mut uses = Vec::new();
            for command in &stages[i].commands {
                let froms: Vec<&str> = match &command.instruction {
                    Instruction::Copy(copy) => copy.from.as_deref().into_iter().collect(),
                    Instruction::Run(run) => run
                        .mounts
                        .iter()
                        .filter_map(|m| m.from.as_deref())
                        .collect(),
                    _ => Vec::new(),
                };
                for from in froms {
                    let used = stage_reference(&stages, i, from)
                        .map_err(|kind| Error::new(command.location.clone(), kind))?;
                    if let Some(used) = used
                        && !uses.contains(&used)
                    {
                        uses.push(used);
                    }
                }
            }
            stages[i].uses = uses;
        }

        Ok(Dockerfile {
            file: ast.file.clone(),
            escape: ast.escape,
            global_args,
            stages,
            warnings,
            syntax_notice,
        })
    }

    /// The stage called `name` (case-insensitive).
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        let lower = name.to_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
    }
}
