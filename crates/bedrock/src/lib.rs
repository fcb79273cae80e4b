//! Bedrock Runtime wire formats: [`eventstream`], the binary framing of `converse-stream`
//! answers; [`converse`], the Converse API's JSON mapped onto the chat request Highside
//! serves; [`invoke`], the native bodies `InvokeModel` accepts.
#![forbid(unsafe_code)]

pub mod converse;
pub mod eventstream;
pub mod invoke;
