//! The command line this process was started with, for the hints it prints ("`…` resumes
//! them") and the experiment's invocation log: a hint that drops the overrides or `-o` would
//! plan other runs, or in another folder, when pasted back.

/// The arguments as the process received them, program name first (lossily decoded).
pub fn argv() -> Vec<String> {
    std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect()
}

/// The arguments joined into one line a POSIX shell reads back as the same arguments: words
/// of safe characters as they are, anything else in single quotes (`'[8],[16]'`, `'it'\''s'`).
pub fn shell_line<S: AsRef<str>>(args: &[S]) -> String {
    args.iter().map(|a| shell_word(a.as_ref())).collect::<Vec<_>>().join(" ")
}

fn shell_word(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// This command again, with `extra` flags appended unless it has them already: what the user
/// runs to resume or retry.
pub fn again(extra: &[&str]) -> String {
    let mut args = argv();
    for flag in extra {
        if !args.iter().any(|a| a == flag) {
            args.push(flag.to_string());
        }
    }
    shell_line(&args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_that_a_shell_would_change_are_quoted() {
        let line = shell_line(&[
            "clorch",
            "run",
            "-m",
            "r.yaml",
            "network.hidden=[8],[16]",
            "-o",
            "my results",
            "it's",
        ]);
        assert_eq!(line, r"clorch run -m r.yaml 'network.hidden=[8],[16]' -o 'my results' 'it'\''s'");
        assert_eq!(shell_line(&["seeds=5", "eval.tasks={a: 1}", ""]), "seeds=5 'eval.tasks={a: 1}' ''");
    }
}
