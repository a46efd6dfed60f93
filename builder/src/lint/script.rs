//! Just enough of a shell reader to find commands in a `RUN` script: words
//! split on unquoted blanks, quotes removed, and commands separated at `&&`,
//! `||`, `;`, `|`, `&`, newlines and parentheses. Expansions stay as written.
//! It is a lint helper, not a shell: good enough to tell `apt-get install -y
//! curl` from `echo "apt-get install"`.

/// The simple commands of `script`, each as its words.
pub fn commands(script: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = script.chars().peekable();
    let end_word = |word: &mut String, in_word: &mut bool, words: &mut Vec<String>| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(next) => {
                    word.push(next);
                    in_word = true;
                }
                None => {}
            },
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                if !matches!(escaped, '"' | '\\' | '$' | '`' | '\n') {
                                    word.push('\\');
                                }
                                if escaped != '\n' {
                                    word.push(escaped);
                                }
                            }
                        }
                        other => word.push(other),
                    }
                }
            }
            '#' if !in_word => {
                // A comment runs to the end of the line.
                for q in chars.by_ref() {
                    if q == '\n' {
                        break;
                    }
                }
                end_word(&mut word, &mut in_word, &mut words);
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            ';' | '&' | '|' | '\n' | '(' | ')' | '{' | '}'
                if !(matches!(c, '{' | '}') && in_word) =>
            {
                end_word(&mut word, &mut in_word, &mut words);
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            c if c.is_whitespace() => end_word(&mut word, &mut in_word, &mut words),
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut words);
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

/// The command's words from the program on: leading `VAR=value` assignments and
/// wrappers (`sudo`, `env`, `exec`, `command`, `time`, `nice`) skipped, and the
/// program reduced to its file name (`/usr/bin/apt-get` → `apt-get`).
pub fn program(command: &[String]) -> Option<(String, &[String])> {
    let mut rest = command;
    loop {
        let (first, tail) = rest.split_first()?;
        let is_assignment = first
            .split_once('=')
            .is_some_and(|(name, _)| !name.is_empty() && is_name(name));
        let name = first.rsplit('/').next().unwrap_or(first);
        if is_assignment {
            rest = tail;
            continue;
        }
        if matches!(name, "sudo" | "env" | "exec" | "command" | "time" | "nice") {
            // Their own options come first (`sudo -E`, `env -i`).
            rest = tail;
            while rest.first().is_some_and(|w| w.starts_with('-')) {
                rest = &rest[1..];
            }
            continue;
        }
        return Some((name.to_owned(), tail));
    }
}

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(script: &str) -> Vec<Vec<&'static str>> {
        commands(script)
            .into_iter()
            .map(|c| {
                c.into_iter()
                    .map(|w| &*Box::leak(w.into_boxed_str()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn splits_commands_and_words() {
        assert_eq!(
            words("apt-get update && apt-get install -y \\\n curl; rm -rf /var/lib/apt/lists/*"),
            vec![
                vec!["apt-get", "update"],
                vec!["apt-get", "install", "-y", "curl"],
                vec!["rm", "-rf", "/var/lib/apt/lists/*"],
            ]
        );
        assert_eq!(
            words("echo 'a && b' \"c;d\" | tee x # apt-get upgrade"),
            vec![vec!["echo", "a && b", "c;d"], vec!["tee", "x"]]
        );
        assert_eq!(
            words("(cd /src && make) || exit 1"),
            vec![vec!["cd", "/src"], vec!["make"], vec!["exit", "1"]]
        );
        assert_eq!(words("echo ${A:-x}"), vec![vec!["echo", "${A:-x}"]]);
    }

    #[test]
    fn finds_the_program() {
        let cmd: Vec<String> = [
            "DEBIAN_FRONTEND=noninteractive",
            "sudo",
            "-E",
            "/usr/bin/apt-get",
            "install",
        ]
        .map(String::from)
        .to_vec();
        let (name, args) = program(&cmd).unwrap();
        assert_eq!(name, "apt-get");
        assert_eq!(args, ["install".to_string()]);
    }
}
