//! Jira Service Management: JQL search by label, customers, requests, comments.

use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use super::*;
use crate::fake_vendor::{Vendor, authorization, json_answer};

/// Jira Service Management Cloud, as the connector calls it.
pub struct Jira {
    secret: String,
    records: Records,
}

stand_in!(Jira);

impl Jira {
    fn answer(&mut self, request: &Request, route: Route<'_>) -> ResponseTemplate {
        match route {
            ("POST", ["rest", "api", "3", "search", "jql"]) => {
                let b = body(request);
                let jql = b["jql"].as_str().unwrap_or_default();
                let found = self.records.search("request", jql, |r, field, op, value| {
                    field == "labels"
                        && tag_condition(&r.body["requestFieldValues"]["labels"], op, value)
                });
                let found = match found {
                    Ok(found) => found,
                    Err(e) => {
                        return json_answer(400, json!({"errorMessages": [e], "errors": {}}));
                    }
                };
                let issues: Vec<Value> = found
                    .into_iter()
                    .map(|r| json!({"id": r.id, "key": r.id}))
                    .collect();
                json_answer(200, json!({"issues": issues, "isLast": true}))
            }
            ("GET", ["rest", "servicedeskapi", "servicedesk", _, "customer"]) => {
                if header(request, "x-experimentalapi") != "opt-in" {
                    return json_answer(
                        400,
                        json!({"errorMessage": "This API is experimental. Experimental APIs are not guaranteed to be stable."}),
                    );
                }
                // This desk's customers whose name or address contains `query`.
                let ("GET", [_, _, _, desk, _]) = route else {
                    unreachable!()
                };
                let values: Vec<Value> = self
                    .records.customers_like(&query(request, "query"))
                    .into_iter()
                    .filter(|c| c.body["desks"].as_array().is_some_and(|d| d.contains(&json!(desk))))
                    .map(|c| json!({"accountId": c.id, "emailAddress": c.body["email"], "displayName": c.body["displayName"]}))
                    .collect();
                json_answer(200, json!({"size": values.len(), "values": values}))
            }
            ("POST", ["rest", "servicedeskapi", "customer"]) => {
                // A customer of the site, of no desk yet; an address the site knows is a 409
                // only when asked for, a 400 like any bad request otherwise.
                let mut b = body(request);
                let email = b["email"].as_str().unwrap_or_default().to_lowercase();
                let known = self.records.all("customer").iter().any(|c| {
                    c.body["email"]
                        .as_str()
                        .is_some_and(|e| e.to_lowercase() == email)
                });
                if known {
                    let status = if query(request, "strictConflictStatusCode") == "true" {
                        409
                    } else {
                        400
                    };
                    return json_answer(
                        status,
                        json!({"errorMessage": "An account already exists for this email", "i18nErrorMessage": {"i18nKey": "sd.customer.create.error.email.exists", "parameters": []}}),
                    );
                }
                b["desks"] = json!([]);
                let id = format!("qm:{}", self.records.next());
                let name = b["displayName"].clone();
                self.records.add("customer", json!(id), None, b);
                json_answer(
                    201,
                    json!({"accountId": id, "emailAddress": email, "displayName": name, "active": true, "timeZone": "UTC", "_links": {"jiraRest": format!("https://acme.atlassian.net/rest/api/2/user?accountId={id}"), "avatarUrls": {}, "self": format!("https://acme.atlassian.net/rest/api/2/user?accountId={id}")}}),
                )
            }
            ("GET", ["rest", "api", "3", "user", "search"]) => {
                let users: Vec<Value> = self
                    .records.customers_like(&query(request, "query"))
                    .into_iter()
                    .map(|c| json!({"accountId": c.id, "accountType": "customer", "emailAddress": c.body["email"], "displayName": c.body["displayName"], "active": true}))
                    .collect();
                json_answer(200, json!(users))
            }
            ("POST", ["rest", "servicedeskapi", "servicedesk", desk, "customer"]) => {
                let b = body(request);
                let ids: Vec<String> = b["accountIds"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                for id in &ids {
                    if !self.records.join_desk(id, desk) {
                        return json_answer(
                            400,
                            json!({"errorMessage": format!("no such account: {id}")}),
                        );
                    }
                }
                ResponseTemplate::new(204)
            }
            ("POST", ["rest", "servicedeskapi", "request"]) => {
                let b = body(request);
                let ok = b["serviceDeskId"].is_string()
                    && b["requestTypeId"].is_string()
                    && b["requestFieldValues"]["summary"].is_string();
                if !ok {
                    return json_answer(
                        400,
                        json!({"errorMessage": "Summary: You must specify a summary of the issue.", "i18nErrorMessage": {"i18nKey": "sd.request.create.error", "parameters": []}}),
                    );
                }
                // Raised for a customer: they become one of the desk's, as in an open desk.
                if let (Some(account), Some(desk)) =
                    (b["raiseOnBehalfOf"].as_str(), b["serviceDeskId"].as_str())
                    && !self.records.join_desk(account, desk)
                {
                    return json_answer(
                        400,
                        json!({"errorMessage": format!("The user '{account}' does not exist."), "i18nErrorMessage": {"i18nKey": "sd.request.create.error", "parameters": []}}),
                    );
                }
                let key = format!("HELP-{}", self.records.next());
                self.records.add("request", json!(key), None, b);
                json_answer(
                    201,
                    json!({"issueId": "10010", "issueKey": key, "requestTypeId": "25", "serviceDeskId": "10"}),
                )
            }
            ("POST", ["rest", "servicedeskapi", "request", key, "comment"]) => {
                if !self.records.exists("request", key) {
                    return not_found();
                }
                let id = self.records.next().to_string();
                self.records
                    .add("comment", json!(id), Some(json!(key)), body(request));
                json_answer(201, json!({"id": id, "public": false}))
            }
            _ => not_found(),
        }
    }
}

impl Vendor for Jira {
    fn authorized(&self, request: &Request) -> bool {
        authorization(request) == basic("agent@acme.example", &self.secret)
    }

    fn unauthorized(&self) -> ResponseTemplate {
        json_answer(
            401,
            json!({"errorMessages": ["You are not authenticated. Authentication required to perform this operation."]}),
        )
    }

    fn handle(&mut self, request: &Request) -> ResponseTemplate {
        route(request, |route| self.answer(request, route))
    }
}
