//! The COPY and ADD steps of a build: the instruction's words expanded into a
//! [`CopyRequest`] (ADD's URLs downloaded through [`crate::fetch`]), its sources found and
//! hashed for the cache key, then, unless cached, written into the stage and snapshotted.

use kleene_dockerfile::{Add, Copy, Dockerfile};

use sha2::{Digest, Sha256};

use super::{parse_chmod, CopyRequest, InlineData, InlineFile, Source, SourceBase};
use crate::build::glob::Ignore;
use crate::build::plan::Plan;
use crate::build::state::StageState;
use crate::build::{cache, expand_err, Builder};
use crate::error::{CoreError, Result};
use crate::fetch::Download;

/// What sources in the context are called in errors and cache keys.
const CONTEXT: &str = "build context";

/// The context as the base of a COPY or ADD.
fn context(plan: &Plan) -> SourceBase {
    SourceBase {
        dir: plan.context.clone(),
        ignore: plan.ignore.clone(),
        what: CONTEXT,
    }
}

/// `--chown` and `--chmod` of COPY or ADD (`what`), expanded; the mode parsed.
fn owner_and_mode(
    st: &StageState,
    df: &Dockerfile,
    (chown, chmod): (Option<&str>, Option<&str>),
    what: &str,
) -> Result<(Option<String>, Option<u32>)> {
    let chown = chown
        .map(|s| st.expand(df, s, &format!("{what} --chown")))
        .transpose()?;
    let chmod = chmod
        .map(|s| {
            st.expand(df, s, &format!("{what} --chmod"))
                .and_then(|m| parse_chmod(&m))
        })
        .transpose()?;
    Ok((chown, chmod))
}

/// The file name a download gets: the last part of the URL's path, `index.html` for none.
fn url_file_name(url: &str) -> String {
    url.split(['?', '#'])
        .next()
        .and_then(|p| p.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .unwrap_or("index.html")
        .to_string()
}

/// The hex digest of `ADD --checksum=sha256:<hex>`.
fn sha256_of_checksum(sum: &str) -> Result<&str> {
    sum.strip_prefix("sha256:").ok_or_else(|| {
        CoreError::InvalidInput(format!(
            "unsupported checksum {sum:?}: expected sha256:<hex>"
        ))
    })
}

/// COPY's heredocs as files, their bodies expanded unless the delimiter was quoted.
fn heredoc_files(df: &Dockerfile, c: &Copy, vars: &[(String, String)]) -> Result<Vec<InlineFile>> {
    c.heredocs
        .iter()
        .map(|h| {
            let body = if h.expand {
                df.expander()
                    .raw_quotes(true)
                    .raw_escapes(true)
                    .expand(&h.content, vars)
                    .map_err(|e| expand_err("COPY heredoc", e))?
            } else {
                h.content.clone()
            };
            Ok(InlineFile {
                name: h.name.clone(),
                data: InlineData::Bytes(body.into_bytes()),
            })
        })
        .collect()
}

/// The digest of the sources for the cache key: their contents as found at their real
/// paths (what a symlink named as a source leads to, `.dockerignore` checked there), and,
/// when a name differs from its real path, the names they are written under.
fn sources_digest(sources: &[Source], ignore: Option<&Ignore>) -> Result<String> {
    let real: Vec<Source> = sources
        .iter()
        .map(|s| Source {
            rel: s.real.clone(),
            ..s.clone()
        })
        .collect();
    let digest = cache::hash_sources(&real, ignore)?;
    if sources.iter().all(|s| s.rel == s.real) {
        return Ok(digest);
    }
    let mut h = Sha256::new();
    h.update(digest.as_bytes());
    for s in sources {
        h.update([0]);
        h.update(s.rel.as_bytes());
    }
    Ok(format!("{:x}", h.finalize()))
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

impl Builder {
    /// COPY.
    pub(in crate::build) async fn copy(
        &mut self,
        plan: &Plan,
        c: &Copy,
        st: &mut StageState,
    ) -> Result<Option<String>> {
        if c.parents || !c.exclude.is_empty() {
            return Err(CoreError::Unsupported(
                "COPY --parents and --exclude are not supported".into(),
            ));
        }
        let df = &plan.df;
        let from = match &c.from {
            None => context(plan),
            Some(f) => {
                let f = st.expand(df, f, "COPY --from")?;
                self.copy_from(plan, st.index, &f).await?
            }
        };
        let vars = st.vars();
        let patterns = df
            .expand_list(&c.sources, &vars)
            .map_err(|e| expand_err("COPY", e))?;
        let dest = st.expand(df, &c.dest, "COPY")?;
        let flags = (c.chown.as_deref(), c.chmod.as_deref());
        let (chown, chmod) = owner_and_mode(st, df, flags, "COPY")?;
        let inline = heredoc_files(df, c, &vars)?;
        let req = CopyRequest {
            from,
            patterns,
            inline,
            dest,
            workdir: st.config.workdir.clone(),
            chown,
            chmod,
            unpack: false,
        };
        self.copy_step(st, req).await
    }

    /// The base of `COPY --from=<reference>`: a stage built before stage `index`, or an
    /// image.
    async fn copy_from(&self, plan: &Plan, index: usize, reference: &str) -> Result<SourceBase> {
        let dir = match plan.built(&self.done, index, reference) {
            Some(d) => d.root.clone(),
            None => {
                let (image, _) = self.engine.resolve_image(reference).await?;
                let ds = image.dataset.clone();
                self.engine
                    .blocking(move |inner| inner.mountpoint(&ds))
                    .await?
            }
        };
        Ok(SourceBase {
            dir,
            ignore: None,
            what: "source image",
        })
    }

    /// ADD: COPY from the context, and http(s) URLs downloaded, local archives unpacked.
    pub(in crate::build) async fn add(
        &mut self,
        plan: &Plan,
        a: &Add,
        st: &mut StageState,
    ) -> Result<Option<String>> {
        if !a.exclude.is_empty() || a.keep_git_dir {
            return Err(CoreError::Unsupported(
                "ADD --exclude and --keep-git-dir are not supported".into(),
            ));
        }
        let df = &plan.df;
        let sources = df
            .expand_list(&a.sources, &st.vars())
            .map_err(|e| expand_err("ADD", e))?;
        let dest = st.expand(df, &a.dest, "ADD")?;
        let flags = (a.chown.as_deref(), a.chmod.as_deref());
        let (chown, chmod) = owner_and_mode(st, df, flags, "ADD")?;
        let checksum = a
            .checksum
            .as_deref()
            .map(|s| st.expand(df, s, "ADD --checksum"))
            .transpose()?;
        let mut inline: Vec<InlineFile> = a
            .heredocs
            .iter()
            .map(|h| InlineFile {
                name: h.name.clone(),
                data: InlineData::Bytes(h.content.clone().into_bytes()),
            })
            .collect();
        let (urls, local): (Vec<String>, Vec<String>) =
            sources.into_iter().partition(|s| is_url(s));
        if checksum.is_some() && (urls.len() != 1 || !local.is_empty()) {
            return Err(CoreError::InvalidInput(
                "ADD --checksum needs exactly one http(s) source".into(),
            ));
        }
        let want = checksum.as_deref().map(sha256_of_checksum).transpose()?;
        for url in &urls {
            inline.push(self.download(url, want).await?);
        }
        let req = CopyRequest {
            from: context(plan),
            patterns: local,
            inline,
            dest,
            workdir: st.config.workdir.clone(),
            chown,
            chmod,
            unpack: a.unpack.unwrap_or(true),
        };
        self.copy_step(st, req).await
    }

    /// Downloads an ADD source (checked against the hex sha256 `want`) into an anonymous
    /// file, with progress events; the build's cancellation stops it.
    async fn download(&self, url: &str, want: Option<&str>) -> Result<InlineFile> {
        let download = Download::open(url).await?;
        let events = self.events.clone();
        let cancel = self.cancel.clone();
        let want = want.map(str::to_string);
        let saved = self
            .engine
            .blocking(move |inner| {
                let cancelled = Box::new(move || cancel.has_changed().is_err());
                download.save(&inner.ops_dir, events, cancelled, want.as_deref())
            })
            .await?;
        Ok(InlineFile {
            name: url_file_name(url),
            data: InlineData::Download(saved),
        })
    }

    /// Copies (or takes from the cache) what `req` asks; the snapshot it made.
    async fn copy_step(&mut self, st: &mut StageState, req: CopyRequest) -> Result<Option<String>> {
        // Without the cache the key is neither looked up nor recorded: the sources are
        // read once, to be copied.
        let keyed = !self.req.no_cache;
        let (req, sources, digest) = self
            .engine
            .blocking(move |_| {
                let sources = req.find_sources()?;
                req.check_dest(sources.len())?;
                let digest = if keyed {
                    sources_digest(&sources, req.from.ignore.as_ref())?
                } else {
                    String::new()
                };
                Ok((req, sources, digest))
            })
            .await?;
        let key = cache::copy_key(&st.chain, &req, &digest);
        if self.try_cache(st, &key).await? {
            return Ok(None);
        }
        self.materialize(st).await?;
        let root = st.root.clone().unwrap_or_default();
        self.engine
            .blocking(move |_| req.write(&root, &sources))
            .await?;
        Ok(Some(self.snapshot(st, key).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_and_checksums() {
        assert_eq!(url_file_name("http://h/a/b.tar.gz?x=1#f"), "b.tar.gz");
        assert_eq!(url_file_name("https://h/"), "index.html");
        assert_eq!(url_file_name("https://h/dir/"), "index.html");
        assert_eq!(sha256_of_checksum("sha256:abc").ok(), Some("abc"));
        assert_eq!(
            sha256_of_checksum("md5:abc").map_err(|e| e.to_string()),
            Err("unsupported checksum \"md5:abc\": expected sha256:<hex>".to_string())
        );
    }
}
