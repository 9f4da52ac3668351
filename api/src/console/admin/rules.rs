//! Rules: the rule set in force with each rule's draft; a rule's page with its editor (a rule
//! that cannot be used is shown again with the error at its field, line and column), the
//! draft tested on history, approval by another admin, discarding; the published versions with
//! rollback. Over the same calls as `/v1/rules` and `/v1/rule-sets`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use crate::auth::ADMIN;
use crate::console::form::{Fields, moment};
use crate::console::page::{self, ConsoleError, badge};
use crate::console::session::Signed;
use crate::rules::book::{self, Proposal};
use crate::rules::history::{self, Period, TestReport};
use crate::rules::{RuleAction, RuleBody, RuleView, rule_list};
use crate::{Api, ApiError};

pub async fn list(State(api): State<Api>, signed: Signed) -> Result<Response, ConsoleError> {
    signed.require(ADMIN)?;
    let rules = rule_list(&api).await?;
    let body = html! {
        h1 { "Rules" }
        p.empty {
            "Rule set version " (rules.version) ", published " (page::time(rules.published_at))
            ". A change is a draft until another admin approves it; the scoring service then decides with the new version within seconds. "
            a href="/console/admin/rules/versions" { "Versions and rollback" }
        }
        p { a href="/console/admin/rules/new" { "New rule" } }
        table {
            tr { th { "Rule" } th { "Reason" } th { "Does" } th { "When" } th { "Draft" } }
            @for rule in &rules.rules {
                @let shown = rule.draft.as_ref().and_then(|d| d.rule.as_ref()).or(rule.live.as_ref());
                tr {
                    td { a href={"/console/admin/rules/" (rule.id)} { (rule.id) } }
                    td { (shown.map_or("", |r| r.reason.as_str())) }
                    td { (shown.map(RuleBody::does).unwrap_or_default()) }
                    td { code { (shown.map_or("", |r| r.when.as_str())) } }
                    td { (draft_state(rule)) }
                }
            }
        }
    };
    Ok(page::shell("Rules", Some(&signed), &body).into_response())
}

pub async fn new(signed: Signed) -> Result<Response, ConsoleError> {
    signed.require(ADMIN)?;
    let blank = Editing {
        rule: RuleBody {
            id: String::new(),
            description: String::new(),
            when: String::new(),
            score: Some(1.0),
            action: None,
            reason: String::new(),
            shadow: false,
        },
        error: None,
    };
    let body = html! {
        h1 { "New rule" }
        (editor(&signed, None, &blank))
    };
    Ok(page::shell("New rule", Some(&signed), &body).into_response())
}

pub async fn create(
    State(api): State<Api>,
    signed: Signed,
    form: Fields,
) -> Result<Response, ConsoleError> {
    signed.submitted(ADMIN, &form)?;
    let rule = submitted_rule(&form, None)?;
    let saved = book::save_draft(
        &api.pool,
        &api.audit,
        &signed.principal.actor(),
        &rule.id,
        Proposal::New(&rule),
    )
    .await;
    match saved {
        Ok(_) => Ok(Redirect::to(&format!("/console/admin/rules/{}", rule.id)).into_response()),
        Err(ApiError::InvalidRule(e)) => {
            let body = html! {
                h1 { "New rule" }
                (editor(&signed, None, &Editing { rule, error: Some(e) }))
            };
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                page::shell("New rule", Some(&signed), &body),
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn show(
    State(api): State<Api>,
    signed: Signed,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ConsoleError> {
    signed.require(ADMIN)?;
    rule_page(&api, &signed, &id, None, None, StatusCode::OK).await
}

pub async fn act(
    State(api): State<Api>,
    signed: Signed,
    axum::extract::Path(id): axum::extract::Path<String>,
    form: Fields,
) -> Result<Response, ConsoleError> {
    signed.submitted(ADMIN, &form)?;
    let actor = signed.principal.actor();
    let back = || Ok(Redirect::to(&format!("/console/admin/rules/{id}")).into_response());
    match form.get("action") {
        Some("save") => {
            let rule = submitted_rule(&form, Some(&id))?;
            let saved =
                book::save_draft(&api.pool, &api.audit, &actor, &id, Proposal::Change(&rule)).await;
            match saved {
                Ok(_) => back(),
                Err(ApiError::InvalidRule(e)) => {
                    let editing = Editing {
                        rule,
                        error: Some(e),
                    };
                    rule_page(
                        &api,
                        &signed,
                        &id,
                        Some(editing),
                        None,
                        StatusCode::UNPROCESSABLE_ENTITY,
                    )
                    .await
                }
                Err(e) => Err(e.into()),
            }
        }
        Some("test") => {
            let period = Period {
                from: form.parsed("from", moment)?,
                to: form.parsed("to", moment)?,
            };
            let report = history::test_rule(&api.pool, &api.engine, &id, &period).await?;
            rule_page(&api, &signed, &id, None, Some(&report), StatusCode::OK).await
        }
        Some("approve") => {
            let revision = form.parsed("revision", str::parse::<i32>)?;
            book::approve(&api.pool, &api.audit, &actor, &id, revision).await?;
            back()
        }
        Some("discard") => {
            book::discard_draft(&api.pool, &api.audit, &actor, &id).await?;
            Ok(Redirect::to("/console/admin/rules").into_response())
        }
        Some("remove") => {
            book::save_draft(&api.pool, &api.audit, &actor, &id, Proposal::Removal).await?;
            back()
        }
        _ => Err(
            ApiError::BadRequest("action: save, test, approve, discard or remove".into()).into(),
        ),
    }
}

pub async fn versions(State(api): State<Api>, signed: Signed) -> Result<Response, ConsoleError> {
    signed.require(ADMIN)?;
    let versions = book::versions(&api.pool).await?;
    let body = html! {
        h1 { "Rule set versions" }
        p.empty { "Newest first; the first is in force. Rolling back publishes an earlier version's rules again as the newest version." }
        table {
            tr { th { "Version" } th { "Published" } th { "Change" } th { "By" } th { "Approved by" } th { "Rules" } th {} }
            @for (i, v) in versions.iter().enumerate() {
                tr {
                    td { (v.version) } td { (page::time(v.published_at)) } td { (v.summary) }
                    td { (v.author) } td { (v.approver) } td { (v.rules.len()) }
                    td {
                        @if i == 0 { (badge("in force")) } @else {
                            form method="post" action={"/console/admin/rules/versions/" (v.version) "/rollback"} {
                                input type="hidden" name="csrf" value=(signed.csrf);
                                button type="submit" { "Roll back to this" }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page::shell("Rule set versions", Some(&signed), &body).into_response())
}

pub async fn roll_back(
    State(api): State<Api>,
    signed: Signed,
    axum::extract::Path(version): axum::extract::Path<i32>,
    form: Fields,
) -> Result<Response, ConsoleError> {
    signed.submitted(ADMIN, &form)?;
    book::roll_back(&api.pool, &api.audit, &signed.principal.actor(), version).await?;
    Ok(Redirect::to("/console/admin/rules/versions").into_response())
}

/// A rule in the editor, with why it was refused.
struct Editing {
    rule: RuleBody,
    error: Option<vigil_engine::RuleError>,
}

async fn rule_page(
    api: &Api,
    signed: &Signed,
    id: &str,
    editing: Option<Editing>,
    report: Option<&TestReport>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let view: RuleView = rule_list(api)
        .await?
        .rules
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("no rule `{id}`, live or drafted")))?;
    let draft = view.draft.as_ref();
    let editing = editing.unwrap_or_else(|| Editing {
        rule: draft
            .and_then(|d| d.rule.clone())
            .or_else(|| view.live.clone())
            .expect("a rule is live or drafted"),
        error: None,
    });
    let mine = draft.is_some_and(|d| d.author == signed.principal.actor());
    let body = html! {
        h1 { "Rule " (id) }
        h2 { "Live" }
        @match &view.live {
            Some(rule) => { (definition(rule)) }
            None => { p.empty { "Not live: only drafted." } }
        }
        @if let Some(d) = draft {
            h2 { "Draft, revision " (d.revision) }
            p { "By " (d.author) ", " (page::time(d.updated_at)) "." }
            @match &d.rule { Some(rule) => { (definition(rule)) } None => { p { (badge("removal")) " The draft removes the rule." } } }
            form method="post" action={"/console/admin/rules/" (id)} {
                input type="hidden" name="csrf" value=(signed.csrf);
                input type="hidden" name="revision" value=(d.revision);
                @if mine {
                    p.empty { "Another admin approves your draft." }
                } @else {
                    button type="submit" name="action" value="approve" { "Approve and publish" }
                    " "
                }
                button type="submit" name="action" value="discard" { "Discard the draft" }
            }
        }
        h2 { "Test on history" }
        form.filters method="post" action={"/console/admin/rules/" (id)} {
            input type="hidden" name="csrf" value=(signed.csrf);
            label { "From" input type="datetime-local" name="from"; }
            label { "To" input type="datetime-local" name="to"; }
            button type="submit" name="action" value="test" { "Test" }
            span.empty { " The draft (or the live rule) over the stored decisions; the last 30 days when empty." }
        }
        @if let Some(report) = report { (report_view(report)) }
        h2 { "Edit" }
        (editor(signed, Some(id), &editing))
        @if view.live.is_some() && draft.is_none_or(|d| d.rule.is_some()) {
            form method="post" action={"/console/admin/rules/" (id)} {
                input type="hidden" name="csrf" value=(signed.csrf);
                button type="submit" name="action" value="remove" { "Draft its removal" }
            }
        }
    };
    Ok((
        status,
        page::shell(&format!("Rule {id}"), Some(signed), &body),
    )
        .into_response())
}

fn editor(signed: &Signed, id: Option<&str>, editing: &Editing) -> Markup {
    let rule = &editing.rule;
    let error_at = |field: &str| editing.error.as_ref().filter(|e| e.field == field);
    let kind = match rule.action {
        Some(RuleAction::Review) => "review",
        Some(RuleAction::Decline) => "decline",
        None => "score",
    };
    let action = id.map_or_else(
        || "/console/admin/rules".to_owned(),
        |id| format!("/console/admin/rules/{id}"),
    );
    html! {
        form.rule-editor method="post" action=(action) {
            input type="hidden" name="csrf" value=(signed.csrf);
            @if id.is_none() {
                label { "Id (lower_snake_case)" input type="text" name="id" value=(rule.id) required maxlength="64"; }
                (field_error(error_at("id")))
            }
            label { "Description" input type="text" name="description" value=(rule.description) maxlength="1000"; }
            label { "When (docs/rules.md)" textarea name="when" rows="3" required maxlength="4000" { (rule.when) } }
            (field_error(error_at("when")))
            label { "Does"
                select name="does" {
                    @for (value, shown) in [("score", "adds a score"), ("review", "forces review"), ("decline", "forces decline")] {
                        option value=(value) selected[value == kind] { (shown) }
                    }
                }
            }
            label { "Score (log-odds, when it adds one)" input type="number" step="any" name="score" value=(rule.score.map(|s| s.to_string()).unwrap_or_default()); }
            (field_error(error_at("score")))
            label { "Reason (UPPER_SNAKE_CASE)" input type="text" name="reason" value=(rule.reason) required maxlength="64"; }
            (field_error(error_at("reason")))
            label { input type="checkbox" name="shadow" value="1" checked[rule.shadow]; " Shadow: record its hits, do not act" }
            button type="submit" name="action" value="save" { "Save the draft" }
        }
    }
}

fn field_error(error: Option<&vigil_engine::RuleError>) -> Markup {
    let Some(e) = error else { return html! {} };
    html! {
        p.problem role="alert" {
            @if let Some(at) = e.at { "Line " (at.line) ", column " (at.column) ": " }
            (e.message)
        }
    }
}

fn submitted_rule(form: &Fields, id: Option<&str>) -> Result<RuleBody, ApiError> {
    let text = |name: &str| form.get(name).unwrap_or_default().to_owned();
    let (score, action) = match form.get("does") {
        Some("review") => (None, Some(RuleAction::Review)),
        Some("decline") => (None, Some(RuleAction::Decline)),
        _ => (form.parsed("score", str::parse::<f64>)?, None),
    };
    Ok(RuleBody {
        id: id.map_or_else(|| text("id"), str::to_owned),
        description: text("description"),
        when: text("when"),
        score,
        action,
        reason: text("reason"),
        shadow: form.get("shadow").is_some(),
    })
}

fn draft_state(rule: &RuleView) -> Markup {
    match (&rule.draft, &rule.live) {
        (None, _) => html! {},
        (Some(d), _) if d.rule.is_none() => {
            html! { (badge("removal")) " r" (d.revision) " by " (d.author) }
        }
        (Some(d), None) => html! { (badge("new")) " r" (d.revision) " by " (d.author) },
        (Some(d), Some(_)) => html! { (badge("changed")) " r" (d.revision) " by " (d.author) },
    }
}

fn definition(rule: &RuleBody) -> Markup {
    html! {
        dl {
            dt { "Description" } dd { (rule.description) }
            dt { "When" } dd { code { (rule.when) } }
            dt { "Does" } dd { (rule.does()) }
            dt { "Reason" } dd { (rule.reason) }
        }
    }
}

fn report_view(r: &TestReport) -> Markup {
    let precision = r
        .precision
        .map_or("-".to_owned(), |p| format!("{:.1} %", p * 100.0));
    let tested = r.draft_revision.map_or("the live rule".to_owned(), |v| {
        format!("draft revision {v}")
    });
    html! {
        section.report {
            p {
                (tested) " against version " (r.live_version) ", " (page::time(r.from)) " to " (page::time(r.to))
                ": " (r.decisions) " decisions read in " (r.elapsed_ms) " ms."
            }
            table {
                tr { th { "Hits" } th { "Live rule's hits" } th { "Fraud" } th { "Genuine" } th { "Precision" } th { "Alerts added" } th { "Alerts removed" } th { "Mean score shift" } th { "Shadow hits recorded" } }
                tr {
                    td { (r.hits) } td { (r.live_hits) } td { (r.hits_fraud) } td { (r.hits_genuine) } td { (precision) }
                    td { (r.alerts_added) } td { (r.alerts_removed) } td { (format!("{:+.4}", r.mean_score_shift)) } td { (r.shadow_hits_recorded) }
                }
            }
            h3 { "Per day" }
            table {
                tr { th { "Day" } th { "Decisions" } th { "Hits" } th { "Fraud" } th { "Genuine" } th { "Shadow hits" } }
                @for d in &r.days {
                    tr { td { (d.day) } td { (d.decisions) } td { (d.hits) } td { (d.fraud) } td { (d.genuine) } td { (d.shadow_hits_recorded) } }
                }
            }
            h3 { "A sample of the hits" }
            table {
                tr { th { "Transaction" } th { "Time" } th { "Amount" } th { "Label" } th { "Live" } th { "With the draft" } }
                @for h in &r.sample {
                    tr {
                        td { (h.transaction_id) }
                        td { (page::time(h.occurred_at)) }
                        td { (page::amount(h.amount_minor, &h.currency)) }
                        td { (h.label.unwrap_or("")) }
                        td { (h.live.decision) " " (page::score(h.live.score)) }
                        td { (h.draft.decision) " " (page::score(h.draft.score)) }
                    }
                }
            }
        }
    }
}
