//! `pmctl completions` and `pmctl man`: shell completions and manual pages, generated from
//! the same definitions as the parser, so they never disagree with it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap_complete::Shell;

/// Print the shell completion script for `shell` (e.g.
/// `pmctl completions bash > /etc/bash_completion.d/pmctl`).
#[derive(Debug, clap::Args)]
pub(crate) struct CompletionsArgs {
    #[arg(value_enum)]
    shell: Shell,
}

/// Print the manual page of pmctl (roff), or write one page per command into a directory
/// (`pmctl man --out-dir /usr/local/share/man/man1`).
#[derive(Debug, clap::Args)]
pub(crate) struct ManArgs {
    /// Write `pmctl.1` and `pmctl-<command>.1` for every subcommand here instead.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

pub(crate) fn completions(args: &CompletionsArgs, mut cli: clap::Command) -> anyhow::Result<()> {
    let name = cli.get_name().to_owned();
    // Into memory first: the generator panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, name, &mut script);
    print_bytes(&script)
}

pub(crate) fn man(args: &ManArgs, cli: clap::Command) -> anyhow::Result<()> {
    match &args.out_dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cli)
                .render(&mut page)
                .context("cannot render the manual page")?;
            print_bytes(&page)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut written = Vec::new();
            let name = cli.get_name().to_owned();
            write_pages(dir, &cli, &name, &name, &mut written)?;
            for path in &written {
                println!("{}", path.display());
            }
            Ok(())
        }
    }
}

/// Writes `page.1` for `command` (invoked as `bin`), then the pages of its subcommands
/// (`page-sub.1`, invoked as `bin sub`).
fn write_pages(
    dir: &Path,
    command: &clap::Command,
    page: &str,
    bin: &str,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let path = dir.join(format!("{page}.1"));
    let mut roff = Vec::new();
    // Titled by the page name (`pmctl-serve-api`), as `man` looks it up.
    let titled = command
        .clone()
        .name(page.to_owned())
        .bin_name(bin.to_owned());
    clap_mangen::Man::new(titled)
        .render(&mut roff)
        .context("cannot render a manual page")?;
    std::fs::write(&path, roff).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        if name == "help" {
            continue;
        }
        write_pages(
            dir,
            sub,
            &format!("{page}-{name}"),
            &format!("{bin} {name}"),
            written,
        )?;
    }
    Ok(())
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn print_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}
