//! What every page shares: the layout, the security headers, the signed-in extractor with its
//! CSRF check, sign-in and sign-out, the language switch, and how a refusal from a service
//! becomes a page.

use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use yitong_core::{Owner, Service};
use yitong_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use yitong_rpc::Caller;

use crate::Shared;
use crate::session::{self, LANGUAGE_COOKIE, SESSION_COOKIE, SIGN_IN_COOKIE, Session};
use crate::staff::{Role, Staff};
use crate::text::Lang;

/// Deadline of one unary call the console makes.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest form body read, uploads excepted.
pub const FORM_BYTES_MAX: usize = 256 * 1024;

/// The stylesheet, embedded in the binary.
const STYLESHEET: &str = include_str!("../assets/console.css");

/// No script runs on any page; styles come from the console alone; nothing frames it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'none'; style-src 'self'; \
     img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every response, error pages and redirects included.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// The language of a request: its cookie, Chinese by default.
pub fn lang_of(headers: &HeaderMap) -> Lang {
    Lang::parse(session::cookie(headers, LANGUAGE_COOKIE))
}

/// A signed-in request: its session, the session's token and the language.
#[derive(Debug)]
pub struct Signed {
    pub session: Session,
    pub token: String,
    pub lang: Lang,
}

impl Signed {
    pub fn staff(&self) -> &Staff {
        &self.session.staff
    }

    pub fn caller(&self) -> &Caller {
        &self.session.staff.acts_as
    }

    pub fn role(&self) -> Role {
        self.session.staff.role()
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, fields: &Fields) -> Result<(), Response> {
        match fields.get("csrf") {
            Some(sent) if session::same_token(sent, &self.session.csrf) => Ok(()),
            _ => Err(self.fail(StatusCode::FORBIDDEN, self.lang.t("csrf"))),
        }
    }

    /// Refuses unless the staff member's role is one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Response> {
        if roles.contains(&self.role()) {
            Ok(())
        } else {
            Err(self.fail(StatusCode::FORBIDDEN, self.lang.t("forbidden")))
        }
    }

    /// An error page within the layout.
    pub fn fail(&self, status: StatusCode, message: &str) -> Response {
        let body = html! { p.error role="alert" { (message) } };
        (status, self.page(self.lang.t("refused"), body)).into_response()
    }

    /// A service's refusal as a page: its code decides the HTTP status, its message is shown.
    pub fn refused(&self, status: &tonic::Status) -> Response {
        let code = match status.code() {
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => StatusCode::FORBIDDEN,
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::InvalidArgument
            | tonic::Code::FailedPrecondition
            | tonic::Code::AlreadyExists
            | tonic::Code::OutOfRange => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_GATEWAY,
        };
        let message = format!("{}: {}", self.lang.t("refused"), status.message());
        self.fail(code, &message)
    }

    /// A page within the layout, for this session.
    pub fn page(&self, title: &str, body: Markup) -> Html<String> {
        layout(
            self.lang,
            Some((&self.session.staff, &self.session.csrf)),
            title,
            body,
        )
    }

    /// A channel to `service` of `owner` as this staff member's caller.
    pub fn channel(
        &self,
        console: &Shared,
        owner: Owner,
        service: Service,
    ) -> Result<crate::GrpcChannel, Response> {
        console
            .connect
            .channel(self.caller(), owner, service)
            .map_err(|error| {
                tracing::warn!(error = %format!("{error:#}"), "console cannot reach a service");
                self.fail(StatusCode::BAD_GATEWAY, &error.to_string())
            })
    }

    /// The ledger, as this staff member's caller.
    pub fn ledger(
        &self,
        console: &Shared,
    ) -> Result<LedgerServiceClient<crate::GrpcChannel>, Response> {
        Ok(LedgerServiceClient::new(self.channel(
            console,
            Owner::ClearingHouse,
            Service::Ledger,
        )?))
    }

    /// Records a state change in the console's action log; a failure to record is logged, the
    /// change itself having been made and audited by the service.
    pub async fn record(&self, console: &Shared, rpc: &str, message_id: &str, outcome: &str) {
        if let Err(error) = console
            .staff
            .record_action(self.staff(), rpc, message_id, outcome)
            .await
        {
            tracing::error!(error = %error, rpc, "console action not recorded");
        }
    }
}

impl FromRequestParts<Shared> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Shared) -> Result<Self, Response> {
        let lang = lang_of(&parts.headers);
        let token = session::cookie(&parts.headers, SESSION_COOKIE).map(str::to_owned);
        match token.and_then(|token| {
            console
                .sessions
                .find(&token)
                .map(|session| (token, session))
        }) {
            Some((token, session)) => Ok(Signed {
                session,
                token,
                lang,
            }),
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}

/// The fields of a form (URL-encoded), repeated names kept in order.
#[derive(Debug, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &[u8]) -> Fields {
        Fields(
            form_urlencoded::parse(body)
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .collect()
    }
}

/// A fresh message id for a change the console makes: the national msgid's shape (sender,
/// then time), the sender being the console.
pub fn message_id() -> String {
    format!("CONSOLE-{}", uuid::Uuid::now_v7().simple())
}

/// A request carrying the console's deadline.
pub fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

/// The whole page: header with the navigation of the staff member's role, the language switch
/// and sign-out (a form, with its CSRF token), then the body.
pub fn layout(
    lang: Lang,
    staff: Option<(&Staff, &str)>,
    title: &str,
    body: Markup,
) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (lang.t("title")) }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                header {
                    a.brand href="/" { (lang.t("title")) }
                    @if let Some((staff, csrf)) = staff {
                        nav aria-label=(lang.t("title")) {
                            ul {
                                li { a href="/" { (lang.t("overview")) } }
                                @match staff.role() {
                                    Role::Bureau => {
                                        li { a href="/reconcile" { (lang.t("reconcile")) } }
                                        li { a href="/clearing" { (lang.t("clearing")) } }
                                        li { a href="/statement" { (lang.t("statement")) } }
                                        li { a href="/settlements" { (lang.t("search")) } }
                                        li { a href="/filings" { (lang.t("filings")) } }
                                    }
                                    Role::ClearingHouse => {
                                        li { a href="/reconcile" { (lang.t("reconcile")) } }
                                        li { a href="/clearing" { (lang.t("clearing")) } }
                                        li { a href="/statement" { (lang.t("statement")) } }
                                        li { a href="/settlements" { (lang.t("search")) } }
                                    }
                                    Role::Finance => {
                                        li { a href="/reconcile" { (lang.t("reconcile")) } }
                                        li { a href="/settlements" { (lang.t("search")) } }
                                    }
                                    Role::Operator => {
                                        li { a href="/operator" { (lang.t("operator")) } }
                                        li { a href="/settlements" { (lang.t("search")) } }
                                    }
                                }
                            }
                        }
                        span.who { (staff.display_name) " (" (staff.acts_as.to_string()) ")" }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { (lang.t("sign_out")) }
                        }
                    }
                    a.lang href=(format!("/lang/{}", if lang == Lang::Zh { "en" } else { "zh" })) {
                        (lang.t("language"))
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(markup.into_string())
}

#[derive(Debug, serde::Deserialize)]
pub struct SignInQuery {
    #[serde(default)]
    failed: Option<String>,
}

/// The sign-in form, with a fresh CSRF token in a cookie and in the form (double submit: a
/// cross-site form cannot read the cookie, and a SameSite=Strict cookie is not sent with it).
pub async fn sign_in_page(
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<SignInQuery>,
) -> Response {
    let lang = lang_of(&headers);
    sign_in_form(lang, query.failed.as_deref(), StatusCode::OK)
}

fn sign_in_form(lang: Lang, failed: Option<&str>, status: StatusCode) -> Response {
    let csrf = session::token();
    let body = html! {
        @match failed {
            Some("limited") => p.error role="alert" { (lang.t("rate_limited")) },
            Some(_) => p.error role="alert" { (lang.t("bad_sign_in")) },
            None => {},
        }
        form.card method="post" action="/login" {
            input type="hidden" name="csrf" value=(csrf);
            label for="username" { (lang.t("username")) }
            input #username type="text" name="username" autocomplete="username" required;
            label for="password" { (lang.t("password")) }
            input #password type="password" name="password" autocomplete="current-password" required;
            button type="submit" { (lang.t("sign_in")) }
        }
    };
    (
        status,
        [(
            header::SET_COOKIE,
            session::set_cookie(SIGN_IN_COOKIE, &csrf, 600),
        )],
        layout(lang, None, lang.t("sign_in"), body),
    )
        .into_response()
}

pub async fn sign_in(
    State(console): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let fields = Fields::parse(&body[..body.len().min(FORM_BYTES_MAX)]);
    let csrf_ok = match (
        session::cookie(&headers, SIGN_IN_COOKIE),
        fields.get("csrf"),
    ) {
        (Some(cookie), Some(sent)) => session::same_token(cookie, sent),
        _ => false,
    };
    if !csrf_ok {
        let body = html! { p.error role="alert" { (lang.t("csrf")) } p { a href="/login" { (lang.t("sign_in")) } } };
        return (
            StatusCode::FORBIDDEN,
            layout(lang, None, lang.t("refused"), body),
        )
            .into_response();
    }
    let username = fields
        .get("username")
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    let password = fields.get("password").unwrap_or_default();
    if !console.sign_in.allows(&username) {
        tracing::warn!(username = %username, "console sign-in refused: too many failures");
        return sign_in_form(lang, Some("limited"), StatusCode::TOO_MANY_REQUESTS);
    }
    match console.staff.verify(&username, password).await {
        Ok(Some(staff)) => {
            console.sign_in.succeeded(&username);
            tracing::info!(username = %username, acts_as = %staff.acts_as, "console sign-in");
            let token = console.sessions.open(staff);
            (
                // Appended: two cookies are set, and an array of parts keeps only the last.
                AppendHeaders([
                    (
                        header::SET_COOKIE,
                        session::set_cookie(
                            SESSION_COOKIE,
                            &token,
                            session::SESSION_LIFETIME_MS / 1_000,
                        ),
                    ),
                    (
                        header::SET_COOKIE,
                        session::set_cookie(SIGN_IN_COOKIE, "", 0),
                    ),
                ]),
                Redirect::to("/"),
            )
                .into_response()
        }
        Ok(None) => {
            console.sign_in.failed(&username);
            tracing::warn!(username = %username, "console sign-in failed");
            sign_in_form(lang, Some("bad"), StatusCode::UNAUTHORIZED)
        }
        Err(error) => {
            tracing::error!(error = %error, "console sign-in could not be checked");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

pub async fn sign_out(
    State(console): State<Shared>,
    signed: Signed,
    body: axum::body::Bytes,
) -> Response {
    let fields = Fields::parse(&body[..body.len().min(FORM_BYTES_MAX)]);
    if let Err(refusal) = signed.check_csrf(&fields) {
        return refusal;
    }
    console.sessions.close(&signed.token);
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(SESSION_COOKIE, "", 0),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

/// Switches the language (a preference cookie, not a session) and goes to the overview.
pub async fn language(Path(code): Path<String>) -> Response {
    let lang = Lang::parse(Some(&code));
    let value = if lang == Lang::En { "en" } else { "zh" };
    (
        [(
            header::SET_COOKIE,
            format!("{LANGUAGE_COOKIE}={value}; Path=/; SameSite=Strict; Max-Age=31536000"),
        )],
        Redirect::to("/"),
    )
        .into_response()
}

pub async fn not_found(headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let body = html! { p { a href="/" { (lang.t("overview")) } } };
    (
        StatusCode::NOT_FOUND,
        layout(lang, None, lang.t("not_found"), body),
    )
        .into_response()
}

/// A city's name in the page's language, with its code.
pub fn city_name(console: &Shared, code: &str, lang: Lang) -> String {
    let city = code
        .parse()
        .ok()
        .and_then(|code| console.network.pool(code));
    match city {
        Some(city) => match lang {
            Lang::Zh => format!("{} {}", city.name_zh, code),
            Lang::En => format!("{} {}", city.name, code),
        },
        None => code.to_owned(),
    }
}
