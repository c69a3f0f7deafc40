//! ldirectord's `read_config`: lines, the global state and the virtual-block state, in the
//! order ldirectord reads, resolves and reports them.

use std::collections::HashSet;
use std::path::Path;

use crate::block::VirtualBlock;
use crate::derive;
use crate::diagnostics::{ConfigError, Diagnostic};
use crate::environment::Environment;
use crate::model::{Config, GlobalSettings};
use crate::quirk;
use crate::resolve::ResolvedVirtual;
use crate::value::is_space;

/// One line of the file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    /// 1-based.
    pub number: usize,
    /// As read, with its newline (messages quoting a line include it, as ldirectord's do).
    pub raw: &'a [u8],
    /// Without the newline. Every pattern ldirectord applies gives the same result on this,
    /// because `.` never matches the newline and `\s*` before `$` may take it or not.
    pub body: &'a [u8],
}

fn split_lines(text: &[u8]) -> Vec<Line<'_>> {
    text.split_inclusive(|&b| b == b'\n')
        .enumerate()
        .map(|(i, raw)| Line {
            number: i + 1,
            raw,
            body: raw.strip_suffix(b"\n").unwrap_or(raw),
        })
        .collect()
}

/// `^\s*$` or `^\s*#`.
pub(crate) fn is_blank_or_comment(body: &[u8]) -> bool {
    match body.iter().find(|&&b| !is_space(b)) {
        None => true,
        Some(&b) => b == b'#',
    }
}

/// Parse state shared by the global and block parsers.
pub(crate) struct Reader<'a> {
    pub env: &'a dyn Environment,
    pub warnings: Vec<Diagnostic>,
    pub global: GlobalSettings,
    /// Reals of the virtuals resolved so far (see `real::MAX_FILE_REALS`).
    pub real_count: usize,
    hostname: Option<String>,
}

impl<'a> Reader<'a> {
    fn new(env: &'a dyn Environment) -> Reader<'a> {
        Reader {
            env,
            warnings: Vec::new(),
            global: GlobalSettings::default(),
            real_count: 0,
            hostname: None,
        }
    }

    pub fn warn(&mut self, warning: Diagnostic) {
        self.warnings.push(warning);
    }

    /// ldirectord's `$HOSTNAME`, asked for once.
    pub fn hostname(&mut self) -> String {
        self.hostname
            .get_or_insert_with(|| self.env.hostname())
            .clone()
    }

    /// The whole file; on error, the warnings so far stay in `self.warnings`.
    fn read(&mut self, text: &[u8]) -> Result<Vec<ResolvedVirtual>, Diagnostic> {
        let lines = split_lines(text);
        let mut virtuals: Vec<ResolvedVirtual> = Vec::new();
        let mut seen_ids: HashSet<String> = HashSet::new();
        let mut warned_cr = false;
        let mut next = 0;
        // ldirectord's `goto outer_loop`: the line that ended a block is read again in the
        // global state, with the line counter where the block left it.
        let mut pending: Option<usize> = None;
        // How often in a row that line was read again. A virtual line read again that ends its
        // own block is read once more and fails the duplicate check, so a third time could
        // only come from an Environment answering differently each time: stop rather than spin.
        let mut rereads: (Option<usize>, u32) = (None, 0);
        loop {
            let index = match pending.take() {
                Some(index) => {
                    let count = if rereads.0 == Some(index) {
                        rereads.1 + 1
                    } else {
                        1
                    };
                    rereads = (Some(index), count);
                    if count > 2 {
                        break;
                    }
                    index
                }
                None if next < lines.len() => {
                    next += 1;
                    next - 1
                }
                None => break,
            };
            let line = lines[index];
            if !warned_cr && line.body.ends_with(b"\r") && !is_blank_or_comment(line.body) {
                warned_cr = true;
                self.warn(quirk::carriage_return(line.number));
            }
            if let Some(header) = crate::block::header(line.body) {
                let block = VirtualBlock::start(header, line.number, self)?;
                let (block, end) = self.read_block(block, &lines, &mut next)?;
                let resolved = crate::resolve::resolve(self, block)?;
                // The duplicate check reports the line that ended the block (or the last line
                // read, at the end of the file).
                if !seen_ids.insert(resolved.id.clone()) {
                    return Err(Diagnostic::error(end.line, "duplicate virtual server"));
                }
                virtuals.push(resolved);
                // A virtual on the very last line ends its block with no line read, so
                // ldirectord reads the virtual line again and the duplicate check above fails
                // on that second reading. Anything else read again is a comment.
                pending = end.reread;
                continue;
            }
            if is_blank_or_comment(line.body) {
                continue;
            }
            self.global_directive(line)?;
        }
        if !self.global.fork {
            for v in &virtuals {
                if v.block.checkinterval.is_some() {
                    self.warn(
                        Diagnostic::warning(
                            0,
                            format!(
                                "checkinterval in virtual service {} ignored when fork=no",
                                v.id
                            ),
                        )
                        .whole_file(),
                    );
                }
            }
        }
        Ok(virtuals)
    }

    /// The lines of one virtual block, up to the first line that is not indented by four
    /// spaces (tabs count four) or a comment.
    fn read_block(
        &mut self,
        mut block: VirtualBlock,
        lines: &[Line<'_>],
        next: &mut usize,
    ) -> Result<(VirtualBlock, BlockEnd), Diagnostic> {
        // `$linedata` in ldirectord: the last line read unless it was a directive.
        let mut last_unhandled: Option<usize> = Some(*next - 1);
        let mut line_number = lines[*next - 1].number;
        while *next < lines.len() {
            let line = lines[*next];
            *next += 1;
            line_number = line.number;
            last_unhandled = Some(*next - 1);
            if is_comment(line.body) {
                continue;
            }
            let Some(command) = block_command(line.body) else {
                break;
            };
            if line.body.contains(&b'#') && quote_open_before_hash(line.body) {
                self.warn(quirk::comment_in_quotes(line.number));
            }
            self.block_directive(&mut block, &command, line.raw, line.number)?;
            last_unhandled = None;
        }
        Ok((
            block,
            BlockEnd {
                line: line_number,
                reread: last_unhandled,
            },
        ))
    }
}

/// Where a block ended.
struct BlockEnd {
    /// ldirectord's line counter at that point.
    line: usize,
    /// The line to read again in the global state.
    reread: Option<usize>,
}

/// `m/^\s*#/` on the raw line.
fn is_comment(body: &[u8]) -> bool {
    matches!(body.iter().find(|&&b| !is_space(b)), Some(b'#'))
}

/// `s/#.*//; s/\t/    /g; /^ {4,}(.+)/`: the directive text of a block line, or `None` when
/// the line ends the block. A line of five or more spaces does not end it: `(.+)` takes the
/// last space, which then is an unknown command.
fn block_command(body: &[u8]) -> Option<Vec<u8>> {
    let uncommented = match body.iter().position(|&b| b == b'#') {
        Some(hash) => &body[..hash],
        None => body,
    };
    let mut expanded = Vec::with_capacity(uncommented.len() + 8);
    for &b in uncommented {
        if b == b'\t' {
            expanded.extend_from_slice(b"    ");
        } else {
            expanded.push(b);
        }
    }
    let spaces = expanded.iter().take_while(|&&b| b == b' ').count();
    if spaces < 4 {
        return None;
    }
    if spaces < expanded.len() {
        return Some(expanded[spaces..].to_vec());
    }
    if spaces >= 5 {
        return Some(b" ".to_vec());
    }
    None
}

/// Whether the text before the first `#` has an unclosed double quote.
fn quote_open_before_hash(body: &[u8]) -> bool {
    let hash = body.iter().position(|&b| b == b'#').unwrap_or(body.len());
    body[..hash].iter().filter(|&&b| b == b'"').count() % 2 == 1
}

/// Reads a whole configuration. `path` is only used to name the file in the result and in
/// messages. Nothing is printed.
pub fn parse(text: &[u8], path: &Path, env: &dyn Environment) -> Result<Config, ConfigError> {
    let mut reader = Reader::new(env);
    let result = reader
        .read(text)
        .and_then(|virtuals| derive::derive(&mut reader, virtuals));
    match result {
        Ok(virtuals) => Ok(Config {
            path: path.to_path_buf(),
            name: crate::locate::config_name_of(path),
            global: reader.global,
            virtuals,
            warnings: reader.warnings,
        }),
        Err(error) => Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            warnings: reader.warnings,
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_newline() {
        let lines = split_lines(b"a\n\nb");
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].raw, b"a\n");
        assert_eq!(lines[0].body, b"a");
        assert_eq!(lines[1].body, b"");
        assert_eq!(lines[2].raw, b"b");
        assert_eq!(lines[2].number, 3);
        assert!(split_lines(b"").is_empty());
    }

    #[test]
    fn block_lines_need_four_spaces_or_a_tab() {
        assert_eq!(block_command(b"\treal=x"), Some(b"real=x".to_vec()));
        assert_eq!(block_command(b"    real=x # c"), Some(b"real=x ".to_vec()));
        assert_eq!(block_command(b"   real=x"), None);
        assert_eq!(block_command(b""), None);
        assert_eq!(block_command(b"    "), None);
        assert_eq!(block_command(b"\t"), None);
        // Five spaces, or a tab and a space: `(.+)` takes the last space.
        assert_eq!(block_command(b"     "), Some(b" ".to_vec()));
        assert_eq!(block_command(b"\t\t"), Some(b" ".to_vec()));
        assert_eq!(block_command(b"    #x"), None);
        assert_eq!(block_command(b"    \r"), Some(b"\r".to_vec()));
        assert_eq!(block_command(b"  \t a=b\tc"), Some(b"a=b    c".to_vec()));
    }

    #[test]
    fn blank_and_comment_lines() {
        assert!(is_blank_or_comment(b""));
        assert!(is_blank_or_comment(b" \t\r"));
        assert!(is_blank_or_comment(b"  # x"));
        assert!(!is_blank_or_comment(b"x # y"));
    }
}
