//! Bedrock Runtime wire formats: [`eventstream`], the binary framing of `converse-stream`
//! answers, and [`converse`], the Converse API's JSON mapped onto the chat request Highside
//! serves. Not yet wired to routes.
#![forbid(unsafe_code)]

pub mod converse;
pub mod eventstream;
