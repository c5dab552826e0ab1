//! Requests on the social feed: posts, likes, comments, follows.

use papo_protocol::{
    Comment, CommentCreate, CommentCreated, ErrorCode, EventBody, FollowChange, LikeChange,
    LogEvent, NotificationKind, Post, PostAction, PostCreate, PostEdit, PostEdited, PostRef,
    PostShare, ShareChange, UserAction,
};

use super::notify::{notify, notify_author, notify_mentions, About};
use super::{check_text, counter, find_post, refuse, Req, TxError};
use crate::store::logic::accounts::find_user;

pub(super) fn post_create(q: &mut Req<'_>, r: &PostCreate) -> Result<Option<LogEvent>, TxError> {
    check_text(&r.text)?;
    let id =
        q.db.query_one(
            "INSERT INTO posts(author_id, text, created_at) VALUES ($1, $2, $3) RETURNING id",
            &[q.actor.id.into(), r.text.as_str().into(), q.now.into()],
        )?
        .int(0)?;
    let ev = q.public(EventBody::PostCreated(new_post(q, id, &r.text, None)))?;
    let about = About {
        post_id: Some(id),
        text: Some(&r.text),
        ..About::default()
    };
    notify_mentions(q.db, q.out, q.actor, about, None, q.now)?;
    Ok(ev)
}

/// A post the actor just wrote (or a share of `share_of`), as its `post.created` says it.
fn new_post(q: &Req<'_>, id: i64, text: &str, share_of: Option<i64>) -> Post {
    Post {
        id,
        author: q.actor.username.clone(),
        text: text.to_string(),
        at: q.now,
        edited_at: None,
        like_count: 0,
        comment_count: 0,
        share_count: 0,
        share_of,
    }
}

pub(super) fn post_edit(q: &mut Req<'_>, r: &PostEdit) -> Result<Option<LogEvent>, TxError> {
    if find_post(q.db, r.post_id)?.id != q.actor.id {
        return refuse(ErrorCode::Forbidden, "only the author can edit a post");
    }
    check_text(&r.text)?;
    q.db.exec(
        "UPDATE posts SET text = $1, edited_at = $2 WHERE id = $3",
        &[r.text.as_str().into(), q.now.into(), r.post_id.into()],
    )?;
    let body = EventBody::PostEdited(PostEdited {
        post_id: r.post_id,
        text: r.text.clone(),
        edited_at: q.now,
    });
    q.public(body)
}

pub(super) fn post_delete(q: &mut Req<'_>, r: &PostAction) -> Result<Option<LogEvent>, TxError> {
    if find_post(q.db, r.post_id)?.id != q.actor.id {
        return refuse(ErrorCode::Forbidden, "only the author can delete a post");
    }
    delete_post(q, r.post_id)
}

/// Deletes a live post (its author's request, or a moderator's); a share also leaves its
/// shared post's count.
pub(super) fn delete_post(q: &mut Req<'_>, post_id: i64) -> Result<Option<LogEvent>, TxError> {
    let deleted = q.db.query_one(
        "UPDATE posts SET deleted = 1 WHERE id = $1 RETURNING share_of, author_id",
        &[post_id.into()],
    )?;
    let (share_of, author) = (deleted.opt_int(0)?, deleted.int(1)?);
    let ev = q.public(EventBody::PostDeleted(PostRef { post_id }))?;
    if let Some(original) = share_of {
        let sharer =
            q.db.query_one("SELECT username FROM users WHERE id = $1", &[author.into()])?
                .text(0)?;
        let share_count = counter(
            q.db,
            "UPDATE posts SET share_count = share_count - 1 WHERE id = $1 RETURNING share_count",
            original,
        )?;
        q.public(EventBody::PostUnshared(ShareChange {
            post_id: original,
            by: sharer,
            share_count,
        }))?;
    }
    Ok(ev)
}

/// The post a share points at: the post itself, or the original it shares (sharing a share
/// shares its original). `not_found` when it is deleted.
fn shared_target(q: &mut Req<'_>, post_id: i64) -> Result<i64, TxError> {
    find_post(q.db, post_id)?;
    let original =
        q.db.query_one(
            "SELECT share_of FROM posts WHERE id = $1",
            &[post_id.into()],
        )?
        .opt_int(0)?;
    match original {
        Some(o) => {
            find_post(q.db, o)?;
            Ok(o)
        }
        None => Ok(post_id),
    }
}

/// `post:share`: a new post sharing `post_id` (or its original), with the actor's comment;
/// sharing what one already shares changes nothing.
pub(super) fn post_share(q: &mut Req<'_>, r: &PostShare) -> Result<Option<LogEvent>, TxError> {
    let original = shared_target(q, r.post_id)?;
    if !r.text.is_empty() {
        check_text(&r.text)?;
    }
    let already = q.db.query_opt(
        "SELECT 1 FROM posts WHERE author_id = $1 AND share_of = $2 AND deleted = 0",
        &[q.actor.id.into(), original.into()],
    )?;
    if already.is_some() {
        return Ok(None); // shared already: idempotent no-op
    }
    let id =
        q.db.query_one(
            "INSERT INTO posts(author_id, text, created_at, share_of) VALUES ($1, $2, $3, $4) \
             RETURNING id",
            &[
                q.actor.id.into(),
                r.text.as_str().into(),
                q.now.into(),
                original.into(),
            ],
        )?
        .int(0)?;
    let share_count = counter(
        q.db,
        "UPDATE posts SET share_count = share_count + 1 WHERE id = $1 RETURNING share_count",
        original,
    )?;
    let post = new_post(q, id, &r.text, Some(original));
    let ev = q.public(EventBody::PostCreated(post))?;
    q.public(EventBody::PostShared(ShareChange {
        post_id: original,
        by: q.actor.username.clone(),
        share_count,
    }))?;
    let author = find_post(q.db, original)?;
    let about = About {
        post_id: Some(original),
        text: (!r.text.is_empty()).then_some(r.text.as_str()),
        ..About::default()
    };
    notify_author(q, &author, NotificationKind::Share, about)?;
    let mentions = About {
        post_id: Some(id),
        ..about
    };
    notify_mentions(q.db, q.out, q.actor, mentions, Some(author.id), q.now)?;
    Ok(ev)
}

/// `post:unshare`: deletes the actor's share of `post_id` (or of its original); nothing to
/// undo changes nothing.
pub(super) fn post_unshare(q: &mut Req<'_>, r: &PostAction) -> Result<Option<LogEvent>, TxError> {
    let original = match q.db.query_opt(
        "SELECT share_of FROM posts WHERE id = $1",
        &[r.post_id.into()],
    )? {
        Some(row) => row.opt_int(0)?.unwrap_or(r.post_id),
        None => return refuse(ErrorCode::NotFound, format!("no post {}", r.post_id)),
    };
    let mine = q.db.query_opt(
        "SELECT id FROM posts WHERE author_id = $1 AND share_of = $2 AND deleted = 0",
        &[q.actor.id.into(), original.into()],
    )?;
    match mine {
        Some(row) => {
            let share = row.int(0)?;
            delete_post(q, share)
        }
        None => Ok(None),
    }
}

pub(super) fn post_like(q: &mut Req<'_>, r: &PostAction) -> Result<Option<LogEvent>, TxError> {
    let author = find_post(q.db, r.post_id)?;
    let added = q.db.exec(
        "INSERT INTO likes(post_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[r.post_id.into(), q.actor.id.into()],
    )?;
    if added == 0 {
        return Ok(None); // already liked: idempotent no-op
    }
    let like_count = counter(
        q.db,
        "UPDATE posts SET like_count = like_count + 1 WHERE id = $1 RETURNING like_count",
        r.post_id,
    )?;
    let body = EventBody::PostLiked(LikeChange {
        post_id: r.post_id,
        by: q.actor.username.clone(),
        like_count,
    });
    let ev = q.public(body)?;
    let about = About {
        post_id: Some(r.post_id),
        ..About::default()
    };
    notify_author(q, &author, NotificationKind::Like, about)?;
    Ok(ev)
}

pub(super) fn post_unlike(q: &mut Req<'_>, r: &PostAction) -> Result<Option<LogEvent>, TxError> {
    find_post(q.db, r.post_id)?;
    let removed = q.db.exec(
        "DELETE FROM likes WHERE post_id = $1 AND user_id = $2",
        &[r.post_id.into(), q.actor.id.into()],
    )?;
    if removed == 0 {
        return Ok(None);
    }
    let like_count = counter(
        q.db,
        "UPDATE posts SET like_count = like_count - 1 WHERE id = $1 RETURNING like_count",
        r.post_id,
    )?;
    let body = EventBody::PostUnliked(LikeChange {
        post_id: r.post_id,
        by: q.actor.username.clone(),
        like_count,
    });
    q.public(body)
}

pub(super) fn comment_create(
    q: &mut Req<'_>,
    r: &CommentCreate,
) -> Result<Option<LogEvent>, TxError> {
    let author = find_post(q.db, r.post_id)?;
    check_text(&r.text)?;
    let comment_id = q.db
        .query_one(
            "INSERT INTO comments(post_id, author_id, text, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
            &[r.post_id.into(), q.actor.id.into(), r.text.as_str().into(), q.now.into()],
        )?
        .int(0)?;
    let comment_count = counter(
        q.db,
        "UPDATE posts SET comment_count = comment_count + 1 WHERE id = $1 RETURNING comment_count",
        r.post_id,
    )?;
    let body = EventBody::CommentCreated(CommentCreated {
        comment: Comment {
            id: comment_id,
            post_id: r.post_id,
            author: q.actor.username.clone(),
            text: r.text.clone(),
            at: q.now,
        },
        comment_count,
    });
    let ev = q.public(body)?;
    let about = About {
        post_id: Some(r.post_id),
        comment_id: Some(comment_id),
        text: Some(&r.text),
        ..About::default()
    };
    notify_author(q, &author, NotificationKind::Comment, about)?;
    // The post's author is told of the comment already.
    notify_mentions(q.db, q.out, q.actor, about, Some(author.id), q.now)?;
    Ok(ev)
}

pub(super) fn user_follow(q: &mut Req<'_>, r: &UserAction) -> Result<Option<LogEvent>, TxError> {
    let target = find_user(q.db, &r.username)?;
    if target.id == q.actor.id {
        return refuse(ErrorCode::BadRequest, "cannot follow yourself");
    }
    let added = q.db.exec(
            "INSERT INTO follows(follower_id, followee_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[q.actor.id.into(), target.id.into(), q.now.into()],
        )?;
    if added == 0 {
        return Ok(None);
    }
    let follower_count = counter(
            q.db,
            "UPDATE users SET follower_count = follower_count + 1 WHERE id = $1 RETURNING follower_count",
            target.id,
        )?;
    let body = EventBody::UserFollowed(FollowChange {
        follower: q.actor.username.clone(),
        followee: target.username.clone(),
        follower_count,
    });
    let ev = q.public(body)?;
    notify(
        q.db,
        q.out,
        target.id,
        q.actor,
        NotificationKind::Follow,
        About::default(),
        q.now,
    )?;
    Ok(ev)
}

pub(super) fn user_unfollow(q: &mut Req<'_>, r: &UserAction) -> Result<Option<LogEvent>, TxError> {
    let target = find_user(q.db, &r.username)?;
    let removed = q.db.exec(
        "DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2",
        &[q.actor.id.into(), target.id.into()],
    )?;
    if removed == 0 {
        return Ok(None);
    }
    let follower_count = counter(
            q.db,
            "UPDATE users SET follower_count = follower_count - 1 WHERE id = $1 RETURNING follower_count",
            target.id,
        )?;
    let body = EventBody::UserUnfollowed(FollowChange {
        follower: q.actor.username.clone(),
        followee: target.username.clone(),
        follower_count,
    });
    q.public(body)
}
