//! What the text typed in a composer means: `/msg <user> <text>` is a private message from any
//! composer; anything else goes to the composer's own target. The desktop app and `papo-cli`
//! both go through [`parse`] (via [`crate::Core::compose`]), so the rule lives in one place.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a composer sends what is typed in it (`/msg user text` always goes to `dm:user`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ComposeTarget {
    /// A chat: `public` or `dm:<peer>`.
    Conversation { id: String },
    /// A new post in the feed.
    Post,
    /// A comment on a post.
    Comment {
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        post_id: i64,
    },
}

/// What [`crate::Core::compose`] did with the text typed in a composer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Sent {
    /// The outbox item's client id.
    pub client_id: Uuid,
    /// The conversation the message went to (`dm:joao` for `/msg joao ...`); `None` for posts
    /// and comments.
    pub conversation: Option<String>,
}

/// The action a composer's text asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Chat { text: String },
    Dm { to: String, text: String },
    Post { text: String },
    Comment { post_id: i64, text: String },
}

/// Why a composer's text cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    #[error("usage: /msg <user> <text>")]
    MsgUsage,
    #[error("nothing to send")]
    Empty,
    #[error("not a conversation: {0}")]
    BadConversation(String),
    #[error("the message replied to was deleted")]
    ReplyGone,
}

/// Parses a composer's text. Leading/trailing whitespace is dropped; inner newlines are kept.
pub fn parse(target: &ComposeTarget, text: &str) -> Result<Action, ComposeError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ComposeError::Empty);
    }
    if let Some(rest) = text.strip_prefix("/msg") {
        if rest.is_empty() || rest.starts_with(char::is_whitespace) {
            let rest = rest.trim_start();
            let (to, body) = rest
                .split_once(char::is_whitespace)
                .ok_or(ComposeError::MsgUsage)?;
            let to = to.trim_start_matches('@');
            let body = body.trim();
            if to.is_empty() || body.is_empty() {
                return Err(ComposeError::MsgUsage);
            }
            return Ok(Action::Dm {
                to: to.to_string(),
                text: body.to_string(),
            });
        }
    }
    let text = text.to_string();
    Ok(match target {
        ComposeTarget::Conversation { id } if id == papo_protocol::conversation::PUBLIC => {
            Action::Chat { text }
        }
        ComposeTarget::Conversation { id } => match papo_protocol::conversation::dm_peer(id) {
            Some(peer) => Action::Dm {
                to: peer.to_string(),
                text,
            },
            None => return Err(ComposeError::BadConversation(id.clone())),
        },
        ComposeTarget::Post => Action::Post { text },
        ComposeTarget::Comment { post_id } => Action::Comment {
            post_id: *post_id,
            text,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> ComposeTarget {
        ComposeTarget::Conversation {
            id: "public".into(),
        }
    }

    #[test]
    fn msg_command_from_any_composer_is_a_dm() {
        for target in [
            public(),
            ComposeTarget::Post,
            ComposeTarget::Comment { post_id: 3 },
        ] {
            assert_eq!(
                parse(&target, "/msg joao oi tudo bem?").unwrap(),
                Action::Dm {
                    to: "joao".into(),
                    text: "oi tudo bem?".into()
                }
            );
        }
    }

    #[test]
    fn msg_keeps_newlines_in_the_body_and_accepts_at_sign() {
        assert_eq!(
            parse(&public(), "/msg @ana linha 1\nlinha 2").unwrap(),
            Action::Dm {
                to: "ana".into(),
                text: "linha 1\nlinha 2".into()
            }
        );
    }

    #[test]
    fn msg_without_text_is_a_usage_error() {
        assert_eq!(parse(&public(), "/msg joao"), Err(ComposeError::MsgUsage));
        assert_eq!(parse(&public(), "/msg"), Err(ComposeError::MsgUsage));
    }

    #[test]
    fn text_goes_to_the_composers_target() {
        assert_eq!(
            parse(&public(), " oi ").unwrap(),
            Action::Chat { text: "oi".into() }
        );
        assert_eq!(
            parse(
                &ComposeTarget::Conversation {
                    id: "dm:bia".into()
                },
                "oi"
            )
            .unwrap(),
            Action::Dm {
                to: "bia".into(),
                text: "oi".into()
            }
        );
        assert_eq!(
            parse(&public(), "/msgs are fun").unwrap(),
            Action::Chat {
                text: "/msgs are fun".into()
            }
        );
        assert_eq!(
            parse(&ComposeTarget::Post, "  \n"),
            Err(ComposeError::Empty)
        );
    }
}
