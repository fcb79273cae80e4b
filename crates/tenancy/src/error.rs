use highside_identity::Denied;
use highside_store::StoreError;

/// Why an admin operation failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// 400: a field is missing or invalid; `param` names it.
    #[error("{message}")]
    Invalid {
        /// What is wrong.
        message: String,
        /// The field at fault.
        param: Option<&'static str>,
    },
    /// 403: the caller may not do this.
    #[error(transparent)]
    Forbidden(#[from] Denied),
    /// 404: no such object, or one the caller may not know exists.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// 409: a unique name or value is taken, or the change would lock the enclave out.
    #[error("{0}")]
    Conflict(String),
    /// 500: the store failed.
    #[error("the identity store failed: {0}")]
    Store(StoreError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate(what) => Self::Conflict(format!("{what} already exists")),
            StoreError::AlreadyBootstrapped => {
                Self::Conflict(StoreError::AlreadyBootstrapped.to_string())
            }
            other => Self::Store(other),
        }
    }
}

impl AdminError {
    pub(crate) fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            param: Some(param),
        }
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid { .. } => 400,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::Store(_) => 500,
        }
    }
}
