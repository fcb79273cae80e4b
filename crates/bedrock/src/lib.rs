//! Bedrock Runtime wire formats. So far: [`eventstream`], the binary framing of
//! `converse-stream` and `invoke-with-response-stream` answers.
#![forbid(unsafe_code)]

pub mod eventstream;
