//! `redcloud shell`: an interactive prompt that speaks the earlier CLI's syntax:
//! `add uploads/a.txt work urgent`, `add-tags work -- urgent`, `download a.txt downloads/b.txt`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::anyhow;

use super::Context;

const HELP: &str = "\
commands:
  register USER PASSWORD          create an account (and log in)
  login USER PASSWORD             log in
  add FILE TAG...                 upload a file with tags
  list [TAG...]                   list files carrying every tag (all without tags)
  download NAME [DEST]            download a file
  delete TAG...                   delete files carrying every tag
  add-tags QUERY... -- TAG...     add tags to matching files
  delete-tags QUERY... -- TAG...  remove tags from matching files
  status                          server health
  help                            this text
  exit                            leave";

/// Splits a line into words; double or single quotes keep spaces inside a word.
pub fn words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unclosed quote".to_owned());
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

/// Splits `QUERY... -- TAG...`.
fn around_separator(args: &[String]) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let at = args
        .iter()
        .position(|a| a == "--")
        .ok_or_else(|| anyhow!("separate query tags and new tags with `--`"))?;
    Ok((
        super::split_tags(&args[..at]),
        super::split_tags(&args[at + 1..]),
    ))
}

/// Runs one shell line. `Ok(false)` means leave.
pub async fn run_line(ctx: &Context, line: &str) -> anyhow::Result<bool> {
    let words = words(line).map_err(|e| anyhow!(e))?;
    let Some((command, args)) = words.split_first() else {
        return Ok(true);
    };
    match (command.as_str(), args) {
        ("exit" | "quit", _) => return Ok(false),
        ("help" | "?", _) => println!("{HELP}"),
        ("register", [user, password]) => super::register(ctx, user, password).await?,
        ("login", [user, password]) => super::login(ctx, user, password).await?,
        ("add", [file, tags @ ..]) if !tags.is_empty() => {
            super::add(
                ctx,
                &[PathBuf::from(file)],
                &super::split_tags(tags).join(","),
            )
            .await?;
        }
        ("list" | "ls", tags) => super::list(ctx, &super::split_tags(tags)).await?,
        ("download" | "get", [name]) => super::download(ctx, name, None).await?,
        ("download" | "get", [name, dest]) => {
            super::download(ctx, name, Some(Path::new(dest))).await?
        }
        ("delete" | "rm", tags) if !tags.is_empty() => {
            super::delete(ctx, &super::split_tags(tags)).await?
        }
        ("add-tags", args) => {
            let (query, tags) = around_separator(args)?;
            super::add_tags(ctx, &query, &tags).await?;
        }
        ("delete-tags" | "remove-tags", args) => {
            let (query, tags) = around_separator(args)?;
            super::delete_tags(ctx, &query, &tags).await?;
        }
        ("status", []) => super::status(ctx).await?,
        (other, _) => {
            return Err(anyhow!(
                "cannot parse `{other}` with those arguments; type `help`"
            ));
        }
    }
    Ok(true)
}

/// Reads commands from standard input until `exit` or end of input. Errors are printed and
/// the shell goes on.
pub async fn run(ctx: &Context) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        println!("RedCloud Files shell; type `help` for commands.");
    }
    let mut lines = std::io::stdin().lock().lines();
    loop {
        if interactive {
            print!("redcloud> ");
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.next() else {
            return Ok(());
        };
        let outcome = run_line(ctx, &line?).await;
        super::remember_frontier(ctx)?;
        match outcome {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(error) => eprintln!("error: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_respect_quotes() {
        assert_eq!(
            words("add 'my file.txt' work  urgent").unwrap(),
            ["add", "my file.txt", "work", "urgent"]
        );
        assert_eq!(words("list \"\"").unwrap(), ["list", ""]);
        assert!(words("add \"unclosed").is_err());
        assert!(words("   ").unwrap().is_empty());
    }

    #[test]
    fn separator_splits_query_and_tags() {
        let args: Vec<String> = ["work", "x,y", "--", "urgent"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            around_separator(&args).unwrap(),
            (
                vec!["work".to_owned(), "x".to_owned(), "y".to_owned()],
                vec!["urgent".to_owned()]
            )
        );
        assert!(around_separator(&args[..2]).is_err());
    }
}
