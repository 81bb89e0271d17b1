//! Room names and where they appear, as pure functions: a name is
//! `[a-z0-9-]{1,32}`; the default room is `lobby`; a room's paths are
//! `/r/NAME`, `/r/NAME/publish`, `/r/NAME/listen` and `/r/NAME/messages`
//! (the lobby keeps the tutorial's `/`, `/publish` and `/listen` too); an
//! SSE id starts with its room and a `/`. Anything else is never a room.

/// The default room: the tutorial's page, `/publish` and `/listen`.
pub const LOBBY: &str = "lobby";
/// Longest room name.
pub const MAX_NAME: usize = 32;
/// What the error pages say a name must be.
pub const RULE: &str = "a room name is 1 to 32 of a-z, 0-9 and -";

/// True for `[a-z0-9-]{1,32}`.
pub fn valid(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What a room path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Page,
    Publish,
    Listen,
    /// The room's recent messages as JSON.
    Messages,
}

/// Reads `/`, `/publish`, `/listen` (the lobby) and `/r/NAME`,
/// `/r/NAME/publish`, `/r/NAME/listen`. `None`: not a room path at all;
/// `Some(Err(()))`: under `/r/` but not a valid name or action.
pub fn parse_path(path: &str) -> Option<Result<(&str, Action), ()>> {
    match path {
        "/" => return Some(Ok((LOBBY, Action::Page))),
        "/publish" => return Some(Ok((LOBBY, Action::Publish))),
        "/listen" => return Some(Ok((LOBBY, Action::Listen))),
        _ => {}
    }
    let rest = path.strip_prefix("/r/")?;
    let (name, action) = match rest.split_once('/') {
        None => (rest, Action::Page),
        Some((name, "")) => (name, Action::Page),
        Some((name, "publish")) => (name, Action::Publish),
        Some((name, "listen")) => (name, Action::Listen),
        Some((name, "messages")) => (name, Action::Messages),
        Some(_) => return Some(Err(())),
    };
    Some(if valid(name) {
        Ok((name, action))
    } else {
        Err(())
    })
}

/// Splits an SSE id into its room and the clock part. An id without a room
/// (as ids were before rooms) is the lobby's.
pub fn split_id(id: &str) -> (&str, &str) {
    match id.split_once('/') {
        Some((room, clock)) => (room, clock),
        None => (LOBBY, id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["lobby", "a", "general", "team-42", &"x".repeat(32)] {
            assert!(valid(good), "{good}");
        }
        for bad in [
            "",
            "A",
            "a b",
            "a_b",
            "é",
            "a/b",
            "..",
            &"x".repeat(33),
            "a\0",
        ] {
            assert!(!valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn paths() {
        use Action::*;
        type Parsed<'a> = Option<Result<(&'a str, Action), ()>>;
        let cases: &[(&str, Parsed)] = &[
            ("/", Some(Ok(("lobby", Page)))),
            ("/publish", Some(Ok(("lobby", Publish)))),
            ("/listen", Some(Ok(("lobby", Listen)))),
            ("/r/general", Some(Ok(("general", Page)))),
            ("/r/general/", Some(Ok(("general", Page)))),
            ("/r/general/publish", Some(Ok(("general", Publish)))),
            ("/r/general/listen", Some(Ok(("general", Listen)))),
            ("/r/lobby/listen", Some(Ok(("lobby", Listen)))),
            ("/r/x/messages", Some(Ok(("x", Messages)))),
            ("/r/General", Some(Err(()))),
            ("/r/", Some(Err(()))),
            ("/r/a/b", Some(Err(()))),
            ("/r/a/listen/x", Some(Err(()))),
            ("/main.css", None),
            ("/r", None),
            ("/rooms", None),
        ];
        for (path, want) in cases {
            assert_eq!(parse_path(path), *want, "{path}");
        }
    }

    #[test]
    fn ids_carry_their_room() {
        assert_eq!(split_id("general/ab.1"), ("general", "ab.1"));
        assert_eq!(split_id("ab.1-cd.2"), ("lobby", "ab.1-cd.2"));
    }
}
