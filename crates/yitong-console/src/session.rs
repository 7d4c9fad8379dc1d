//! Signing in and staying signed in: sessions held in memory behind an HttpOnly, SameSite=Strict
//! cookie, one CSRF token per session checked on every form, and sign-in attempts limited per
//! user name.
//!
//! Sessions live in the console's memory: a restart signs everyone out, which for a staff tool
//! is a fair price for never writing a session secret to disk.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::staff::Staff;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "yitong_session";
/// Name of the cookie that carries the sign-in form's CSRF token before there is a session.
pub const SIGN_IN_COOKIE: &str = "yitong_sign_in";
/// Name of the language cookie.
pub const LANGUAGE_COOKIE: &str = "yitong_lang";
/// A session ends after this long without a request.
pub const SESSION_IDLE_MS: u64 = 30 * 60 * 1_000;
/// A session ends this long after sign-in, however busy.
pub const SESSION_LIFETIME_MS: u64 = 12 * 60 * 60 * 1_000;
/// Sessions held at most; beyond it the oldest idle ones are dropped first.
pub const SESSIONS_MAX: usize = 10_000;
/// Failed sign-ins allowed per user name within [`SIGN_IN_WINDOW_MS`]; the next attempt in the
/// window is refused without checking the password, right or wrong.
pub const SIGN_IN_FAILURES_MAX: u32 = 5;
/// The window the failures are counted over.
pub const SIGN_IN_WINDOW_MS: u64 = 15 * 60 * 1_000;
/// User names whose failures are tracked at most.
const SIGN_IN_TRACKED_MAX: usize = 10_000;

/// A random token: 32 bytes from the thread's CSPRNG, URL-safe base64.
pub fn token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Compares two tokens in constant time.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// One signed-in staff member.
#[derive(Debug, Clone)]
pub struct Session {
    pub staff: Staff,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    signed_in: Instant,
    last_seen: Instant,
}

/// Every session, by token.
#[derive(Debug, Default)]
pub struct Sessions {
    by_token: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session for `staff`; returns its token.
    pub fn open(&self, staff: Staff) -> String {
        let now = Instant::now();
        let token = token();
        let mut sessions = self.by_token.lock().expect("sessions lock");
        sessions.retain(|_, session| live(session, now));
        if sessions.len() >= SESSIONS_MAX
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, session)| session.last_seen)
                .map(|(token, _)| token.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            token.clone(),
            Session {
                staff,
                csrf: self::token(),
                signed_in: now,
                last_seen: now,
            },
        );
        token
    }

    /// The live session of `token`, touched.
    pub fn find(&self, token: &str) -> Option<Session> {
        let now = Instant::now();
        let mut sessions = self.by_token.lock().expect("sessions lock");
        let session = sessions.get_mut(token)?;
        if !live(session, now) {
            sessions.remove(token);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    pub fn close(&self, token: &str) {
        self.by_token.lock().expect("sessions lock").remove(token);
    }
}

fn live(session: &Session, now: Instant) -> bool {
    now.duration_since(session.last_seen) < Duration::from_millis(SESSION_IDLE_MS)
        && now.duration_since(session.signed_in) < Duration::from_millis(SESSION_LIFETIME_MS)
}

/// Failed sign-ins per user name.
#[derive(Debug, Default)]
pub struct SignInLimiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl SignInLimiter {
    /// Whether `username` may try now.
    pub fn allows(&self, username: &str) -> bool {
        let failures = self.failures.lock().expect("limiter lock");
        match failures.get(username) {
            Some((count, since)) => {
                *count < SIGN_IN_FAILURES_MAX
                    || since.elapsed() >= Duration::from_millis(SIGN_IN_WINDOW_MS)
            }
            None => true,
        }
    }

    /// Counts a failure; the window starts at the first failure after the last one expired.
    pub fn failed(&self, username: &str) {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("limiter lock");
        if failures.len() >= SIGN_IN_TRACKED_MAX {
            failures.retain(|_, (_, since)| {
                now.duration_since(*since) < Duration::from_millis(SIGN_IN_WINDOW_MS)
            });
        }
        let entry = failures.entry(username.to_owned()).or_insert((0, now));
        if now.duration_since(entry.1) >= Duration::from_millis(SIGN_IN_WINDOW_MS) {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    /// A successful sign-in clears the count.
    pub fn succeeded(&self, username: &str) {
        self.failures.lock().expect("limiter lock").remove(username);
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, the whole site, `max_age_s` (0 to delete).
pub fn set_cookie(name: &str, value: &str, max_age_s: u64) -> String {
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}")
}
