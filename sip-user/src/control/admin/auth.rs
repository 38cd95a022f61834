//! Bearer tokens for the admin API, read from `admin.tokens_file`: one per line,
//! `name role token`, where `role` is `read` (the `GET` routes) or `write` (all of them). The
//! name is who the log says made a change. Tokens are kept as SHA-256 digests and a presented
//! token is compared with every one in constant time (`subtle`), so neither the comparison nor
//! the token's length says how close a guess came.

use std::{fmt, path::Path};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shorter tokens are refused: a token is a password a script holds, and 16 characters of a
/// random string are the least that resists guessing over the network.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Write,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Write => "write",
        })
    }
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
struct Token {
    digest: [u8; 32],
    caller: Caller,
}

/// The tokens of one tokens file.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Vec<Token>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokensError {
    #[error("admin.tokens_file {path}: {error}")]
    Read { path: String, error: String },
    #[error("admin.tokens_file {path} line {line}: {problem}")]
    Line {
        path: String,
        line: usize,
        problem: String,
    },
    #[error("admin.tokens_file {0}: no tokens (lines of `name role token`)")]
    Empty(String),
}

impl Tokens {
    pub fn from_file(path: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokensError::Read {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        warn_if_readable_by_others(path);
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses a tokens file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, TokensError> {
        let mut tokens: Vec<Token> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_error = |problem: String| TokensError::Line {
                path: path.to_string(),
                line: i + 1,
                problem,
            };
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, role, token] = fields[..] else {
                return Err(line_error(format!(
                    "expected `name role token`, got {} fields",
                    fields.len()
                )));
            };
            let role = match role {
                "read" => Role::Read,
                "write" => Role::Write,
                other => {
                    return Err(line_error(format!(
                        "role `{other}`: must be `read` or `write`"
                    )));
                }
            };
            if token.len() < MIN_TOKEN_LEN {
                return Err(line_error(format!(
                    "the token of `{name}` is {} characters; at least {MIN_TOKEN_LEN} are needed \
                     (e.g. `openssl rand -hex 24`)",
                    token.len()
                )));
            }
            if tokens.iter().any(|t| t.caller.name == name) {
                return Err(line_error(format!("`{name}` is listed twice")));
            }
            tokens.push(Token {
                digest: Sha256::digest(token.as_bytes()).into(),
                caller: Caller {
                    name: name.to_string(),
                    role,
                },
            });
        }
        if tokens.is_empty() {
            return Err(TokensError::Empty(path.to_string()));
        }
        Ok(Tokens(tokens))
    }

    /// Who holds `presented`, if anyone. Every stored digest is compared (no early exit).
    pub fn check(&self, presented: &str) -> Option<&Caller> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for t in &self.0 {
            if bool::from(t.digest.ct_eq(&digest)) {
                found = Some(&t.caller);
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        log::warn!(
            "admin.tokens_file {} can be read by every user: chmod 600 it",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# who   role   token\n\
                        alice  write  0123456789abcdef0123\n\
                        \n\
                        grafana read  fedcba9876543210fedc  # dashboards\n";

    #[test]
    fn tokens_name_their_holder_and_role() {
        let t = Tokens::parse(FILE, "t").unwrap();
        assert_eq!(t.len(), 2);
        let alice = t.check("0123456789abcdef0123").unwrap();
        assert_eq!((alice.name.as_str(), alice.role), ("alice", Role::Write));
        assert_eq!(t.check("fedcba9876543210fedc").unwrap().role, Role::Read);
        assert_eq!(t.check("0123456789abcdef012"), None);
        assert_eq!(t.check(""), None);
    }

    #[test]
    fn bad_lines_are_named() {
        let e = |text: &str| Tokens::parse(text, "f").unwrap_err().to_string();
        assert_eq!(
            e("alice write"),
            "admin.tokens_file f line 1: expected `name role token`, got 2 fields"
        );
        assert!(e("a admin 0123456789abcdef").contains("role `admin`"));
        assert!(e("a read short").contains("at least 16"));
        assert!(e("a read 0123456789abcdef\na write 0123456789abcdeg").contains("line 2"));
        assert_eq!(
            e("# nothing\n"),
            "admin.tokens_file f: no tokens (lines of `name role token`)"
        );
    }
}
