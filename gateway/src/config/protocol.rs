//! What a service port's endpoints speak, as configs name it.

/// What a service port's endpoints speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceProtocol {
    /// HTTP/1.1.
    #[default]
    Http,
    /// HTTP/2 without TLS (h2c, prior knowledge): gRPC servers.
    Http2,
    /// Bytes: reached by TCP listeners; an HTTP call to it is carried as
    /// HTTP/1.1.
    Tcp,
}

impl ServiceProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Http2 => "http2",
            Self::Tcp => "tcp",
        }
    }

    /// The protocol named `s` in a config (empty: the default).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "" | "http" => Ok(Self::Http),
            "http2" => Ok(Self::Http2),
            "tcp" => Ok(Self::Tcp),
            other => Err(format!("{other:?} is not http, http2 or tcp")),
        }
    }

    /// Whether HTTP calls to it go as HTTP/2.
    pub fn is_http2(self) -> bool {
        self == Self::Http2
    }
}
