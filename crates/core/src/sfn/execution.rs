//! The execution a step runs in, and a caught step error, as the ASL hands them to a step.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The execution a step runs in (from the ASL context object).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Execution {
    pub id: String,
    pub name: String,
    pub start_time: String,
}

/// A caught Step Functions error (`Catch` with `ResultPath`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepError {
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

impl StepError {
    /// The readable part of a cause: a Lambda error's `errorMessage`, else the cause itself.
    pub fn message(&self) -> String {
        serde_json::from_str::<Value>(&self.cause)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| self.cause.clone())
    }
}

/// The Step Functions console page of an execution.
pub fn execution_console_url(execution_arn: &str) -> String {
    let region = execution_arn.split(':').nth(3).unwrap_or("us-east-1");
    format!("https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}")
}
