//! Every instruction through the typed layer, and the syntax tree's spans.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kleene_dockerfile::{
    parse, parse_syntax, ArgDecl, Dockerfile, Expander, Healthcheck, ImageRef, Instruction,
    KeyValue, Keyword, ShellOrExec,
};

/// The instructions of the only stage of `FROM scratch\n<body>`.
fn stage_of(body: &str) -> Vec<Instruction> {
    let df = parse(&format!("FROM scratch\n{body}")).unwrap();
    assert_eq!(df.stages.len(), 1);
    df.stages[0]
        .instructions
        .iter()
        .map(|i| i.node.clone())
        .collect()
}

fn one(body: &str) -> Instruction {
    let mut v = stage_of(body);
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v.into(),
    }
}

#[test]
fn from_forms() {
    let df =
        parse("ARG V=13.2\nFROM --platform=freebsd/amd64 FreeBSD:${V}@abc AS Build\nFROM build\n")
            .unwrap();
    assert_eq!(df.global_args.len(), 1);
    assert_eq!(
        df.global_args[0].node,
        ArgDecl {
            name: "V".into(),
            default: Some("13.2".into())
        }
    );
    let s0 = &df.stages[0];
    assert_eq!(s0.name.as_deref(), Some("build"));
    assert_eq!(s0.from.image, "FreeBSD:${V}@abc");
    assert_eq!(s0.from.platform.as_deref(), Some("freebsd/amd64"));
    let env = [("V", "13.2")];
    let r = s0.from.image_ref(&df.expander(), &env).unwrap();
    assert_eq!(
        r,
        ImageRef {
            name: "FreeBSD".into(),
            tag: Some("13.2".into()),
            snapshot: Some("abc".into())
        }
    );
    assert_eq!(df.stages[1].from.image, "build");
    assert!(df.stage("BUILD").is_some());
    assert!(df.stage("1").is_some());
    let lit = parse("FROM base:failed@fb70baa07e6e").unwrap();
    assert_eq!(
        lit.stages[0].from.snapshot().as_deref(),
        Some("fb70baa07e6e")
    );
}

#[test]
fn run_shell_exec_flags_heredoc() {
    assert_eq!(
        one("RUN echo $HOME && ls"),
        Instruction::Run(kleene_dockerfile::Run {
            command: ShellOrExec::Shell("echo $HOME && ls".into()),
            flags: Default::default(),
            heredocs: vec![],
        })
    );
    let Instruction::Run(r) = one("RUN [\"echo\", \"$HOME\"]") else {
        panic!()
    };
    assert_eq!(
        r.command,
        ShellOrExec::Exec(vec!["echo".into(), "$HOME".into()])
    );
    let Instruction::Run(r) =
        one("RUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t --network=none make")
    else {
        panic!()
    };
    assert_eq!(
        r.flags.mounts,
        ["type=cache,target=/c", "type=tmpfs,target=/t"]
    );
    assert_eq!(r.flags.network.as_deref(), Some("none"));
    let Instruction::Run(r) = one("RUN <<EOF\necho one\necho two\nEOF") else {
        panic!()
    };
    assert_eq!(r.command, ShellOrExec::Shell("<<EOF".into()));
    assert_eq!(r.heredocs.len(), 1);
    assert_eq!(r.heredocs[0].name, "EOF");
    assert_eq!(r.heredocs[0].content, "echo one\necho two\n");
    assert!(r.heredocs[0].expand);
}

#[test]
fn heredoc_variants() {
    let text = "FROM x\nRUN <<-\"A\" 3<<'B' cat\n\tquoted $X\n\tA\nbody b\nB\nRUN true\n";
    let tree = parse_syntax(text).unwrap();
    let docs = &tree.nodes[1].heredocs;
    assert_eq!(docs.len(), 2);
    assert_eq!(
        (docs[0].name.as_str(), docs[0].chomp, docs[0].expand),
        ("A", true, false)
    );
    assert_eq!(docs[0].content, "\tquoted $X\n");
    assert_eq!(docs[0].body(), "quoted $X\n");
    assert_eq!(
        (docs[1].name.as_str(), docs[1].fd, docs[1].expand),
        ("B", Some(3), false)
    );
    assert_eq!(docs[1].content, "body b\n");
    assert_eq!(tree.nodes[2].keyword, Keyword::Run);
    assert_eq!(docs[0].span.line, 3);
    // JSON form RUN takes no heredoc: the following lines are instructions.
    let tree = parse_syntax("FROM x\nRUN [\"cat\", \"<<EOF\"]\nRUN y\n").unwrap();
    assert_eq!(tree.nodes.len(), 3);
}

#[test]
fn copy_and_add() {
    let Instruction::Copy(c) = one(
        "COPY --from=build --chown=1:1 --chmod=755 --link --exclude=*.o --exclude=*.a a b /dst/",
    ) else {
        panic!()
    };
    assert_eq!(c.sources, ["a", "b"]);
    assert_eq!(c.dest, "/dst/");
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.chown.as_deref(), Some("1:1"));
    assert_eq!(c.chmod.as_deref(), Some("755"));
    assert!(c.link);
    assert_eq!(c.exclude, ["*.o", "*.a"]);
    let Instruction::Copy(c) = one("COPY [\"a b\", \"/x y\"]") else {
        panic!()
    };
    assert_eq!(
        (c.sources.as_slice(), c.dest.as_str()),
        (&["a b".to_string()][..], "/x y")
    );
    let Instruction::Copy(c) = one("COPY <<-EOT /etc/motd\n\thello\nEOT") else {
        panic!()
    };
    assert!(c.sources.is_empty());
    assert_eq!(c.heredocs.len(), 1);
    assert_eq!(c.heredocs[0].content, "hello\n");
    let Instruction::Add(a) =
        one("ADD --keep-git-dir=true --checksum=sha256:ab --unpack=false https://x/y.tar /y")
    else {
        panic!()
    };
    assert!(a.keep_git_dir);
    assert_eq!(a.checksum.as_deref(), Some("sha256:ab"));
    assert_eq!(a.unpack, Some(false));
    assert_eq!(a.sources, ["https://x/y.tar"]);
    let Instruction::Add(a) = one("ADD --chown=me a /b") else {
        panic!()
    };
    assert_eq!(a.chown.as_deref(), Some("me"));
}

#[test]
fn cmd_entrypoint_shell() {
    assert_eq!(
        one("CMD [\"a\", \"b\"]"),
        Instruction::Cmd(ShellOrExec::Exec(vec!["a".into(), "b".into()]))
    );
    assert_eq!(
        one("CMD echo hi"),
        Instruction::Cmd(ShellOrExec::Shell("echo hi".into()))
    );
    assert_eq!(one("CMD []"), Instruction::Cmd(ShellOrExec::Exec(vec![])));
    assert_eq!(
        one("ENTRYPOINT [\"/init\"]"),
        Instruction::Entrypoint(ShellOrExec::Exec(vec!["/init".into()]))
    );
    assert_eq!(
        one("ENTRYPOINT exec /init"),
        Instruction::Entrypoint(ShellOrExec::Shell("exec /init".into()))
    );
    assert_eq!(
        one("SHELL [\"/bin/csh\", \"-c\"]"),
        Instruction::Shell(vec!["/bin/csh".into(), "-c".into()])
    );
    // Invalid JSON falls back to the shell form, as Docker does.
    assert_eq!(
        one("CMD ['a']"),
        Instruction::Cmd(ShellOrExec::Shell("['a']".into()))
    );
}

#[test]
fn env_label_arg() {
    assert_eq!(
        one("ENV A=1 B=\"two words\""),
        Instruction::Env(vec![kv("A", "1"), kv("B", "\"two words\"")])
    );
    assert_eq!(
        one("ENV PATH /usr/local/bin:$PATH"),
        Instruction::Env(vec![kv("PATH", "/usr/local/bin:$PATH")])
    );
    assert_eq!(
        one("ENV spring.profiles.active=prod"),
        Instruction::Env(vec![kv("spring.profiles.active", "prod")])
    );
    assert_eq!(
        one("LABEL a.b=c \"x y\"=z"),
        Instruction::Label(vec![kv("a.b", "c"), kv("\"x y\"", "z")])
    );
    assert_eq!(
        one("LABEL maintainer me@x"),
        Instruction::Label(vec![kv("maintainer", "me@x")])
    );
    assert_eq!(
        one("ARG A B=2 C="),
        Instruction::Arg(vec![
            ArgDecl {
                name: "A".into(),
                default: None
            },
            ArgDecl {
                name: "B".into(),
                default: Some("2".into())
            },
            ArgDecl {
                name: "C".into(),
                default: Some("".into())
            },
        ])
    );
}

#[test]
fn single_argument_instructions() {
    assert_eq!(one("USER $(id -u)"), Instruction::User("$(id -u)".into()));
    assert_eq!(one("WORKDIR /a b"), Instruction::Workdir("/a b".into()));
    assert_eq!(
        one("MAINTAINER Me <me@x>"),
        Instruction::Maintainer("Me <me@x>".into())
    );
    assert_eq!(
        one("STOPSIGNAL SIGTERM"),
        Instruction::StopSignal("SIGTERM".into())
    );
}

#[test]
fn expose_volume() {
    assert_eq!(
        one("EXPOSE 80 443/tcp 53/udp"),
        Instruction::Expose(vec!["80".into(), "443/tcp".into(), "53/udp".into()])
    );
    assert_eq!(
        one("VOLUME /a /b"),
        Instruction::Volume(vec!["/a".into(), "/b".into()])
    );
    assert_eq!(
        one("VOLUME [\"/a b\"]"),
        Instruction::Volume(vec!["/a b".into()])
    );
}

#[test]
fn healthcheck() {
    assert_eq!(
        one("HEALTHCHECK NONE"),
        Instruction::Healthcheck(Healthcheck::None)
    );
    let Instruction::Healthcheck(Healthcheck::Cmd { command, options }) =
        one("HEALTHCHECK --interval=5s --timeout=1m30s --start-period=0s --start-interval=2s --retries=3 CMD curl -f http://localhost/")
    else {
        panic!()
    };
    assert_eq!(
        command,
        ShellOrExec::Shell("curl -f http://localhost/".into())
    );
    assert_eq!(options.interval, Some(Duration::from_secs(5)));
    assert_eq!(options.timeout, Some(Duration::from_secs(90)));
    assert_eq!(options.start_period, Some(Duration::ZERO));
    assert_eq!(options.start_interval, Some(Duration::from_secs(2)));
    assert_eq!(options.retries, Some(3));
    let Instruction::Healthcheck(Healthcheck::Cmd { command, .. }) =
        one("HEALTHCHECK cmd [\"check\"]")
    else {
        panic!()
    };
    assert_eq!(command, ShellOrExec::Exec(vec!["check".into()]));
}

#[test]
fn onbuild() {
    let Instruction::Onbuild(o) = one("ONBUILD RUN echo hi") else {
        panic!()
    };
    assert_eq!(o.expression, "RUN echo hi");
    assert_eq!(
        *o.instruction,
        Instruction::Run(kleene_dockerfile::Run {
            command: ShellOrExec::Shell("echo hi".into()),
            flags: Default::default(),
            heredocs: vec![],
        })
    );
    let Instruction::Onbuild(o) = one("ONBUILD COPY --from=x <<EOF /f\nbody\nEOF") else {
        panic!()
    };
    let Instruction::Copy(c) = *o.instruction else {
        panic!()
    };
    assert_eq!(c.heredocs[0].content, "body\n");
    assert_eq!(o.expression, "COPY --from=x <<EOF /f\nbody\nEOF");
    let tree = parse_syntax("FROM x\nONBUILD ADD . /app\n").unwrap();
    assert_eq!(
        kleene_dockerfile::dump(&tree),
        "(from \"x\")\n(onbuild (add \".\" \"/app\"))\n"
    );
}

#[test]
fn lexical_features() {
    // Case-insensitive keywords, leading white space, comments inside
    // continuations, blank continuation lines, CRLF line ends.
    let text = "# syntax=docker/dockerfile:1\r\n# check=skip=all\r\n  from alpine\r\nrun echo a \\\r\n# comment\r\n\r\n   b\r\n";
    let tree = parse_syntax(text).unwrap();
    assert_eq!(tree.directives.len(), 2);
    assert_eq!(tree.directives[0].value, "docker/dockerfile:1");
    assert_eq!(tree.directives[1].name, "check");
    assert_eq!(tree.directives[1].value, "skip=all");
    assert_eq!(tree.nodes[1].args[0].value, "echo a    b");
    assert_eq!(tree.warnings.len(), 1);
    let df = Dockerfile::parse(text).unwrap();
    assert_eq!(df.directive("syntax"), Some("docker/dockerfile:1"));
    // A directive after an instruction is a comment.
    let tree = parse_syntax("FROM a\n# escape=`\nRUN a \\\n b\n").unwrap();
    assert_eq!(tree.escape, '\\');
    assert_eq!(tree.nodes[1].args[0].value, "a  b");
    // The backtick escape.
    let tree = parse_syntax("# escape=`\nFROM a\nRUN dir c:\\ `\n  x\n").unwrap();
    assert_eq!(tree.escape, '`');
    assert_eq!(tree.nodes[1].args[0].value, "dir c:\\   x");
    // Flags end at `--`.
    let tree = parse_syntax("FROM a\nCOPY --from=b -- --weird /x\n").unwrap();
    assert_eq!(tree.nodes[1].flags.len(), 1);
    assert_eq!(tree.nodes[1].args[0].value, "--weird");
    // An escape at the very end of the file.
    let tree = parse_syntax("FROM a\nRUN x \\").unwrap();
    assert_eq!(tree.nodes[1].args[0].value, "x");
}

#[test]
fn spans() {
    let text = "FROM a\nCOPY --chown=me \\\n  src /dst\nCMD [\"x\", \"y\"]\n";
    let tree = parse_syntax(text).unwrap();
    let copy = &tree.nodes[1];
    assert_eq!(
        (copy.span.line, copy.span.column, copy.span.end_line),
        (2, 1, 3)
    );
    assert_eq!(&text[copy.keyword_span.range()], "COPY");
    let f = &copy.flags[0];
    assert_eq!((f.span.line, f.span.column), (2, 6));
    assert_eq!(&text[f.span.range()], "--chown=me");
    let src = &copy.args[0];
    assert_eq!((src.span.line, src.span.column), (3, 3));
    assert_eq!(&text[src.span.range()], "src");
    let dst = &copy.args[1];
    assert_eq!(&text[dst.span.range()], "/dst");
    let cmd = &tree.nodes[2];
    assert_eq!(&text[cmd.args[1].span.range()], "\"y\"");
    assert_eq!((cmd.args[1].span.line, cmd.args[1].span.column), (4, 11));
    let df = parse(text).unwrap();
    assert_eq!(df.stages[0].instructions[0].span.line, 2);
}

#[test]
fn expansion_through_the_dockerfile() {
    let df = parse("# escape=`\nFROM a\n").unwrap();
    let env = vec![("A".to_string(), "x y".to_string())];
    assert_eq!(df.expand("`$A $A", &env).unwrap(), "$A x y");
    assert_eq!(
        df.expand_list(&["$A".into(), "z".into()], &env).unwrap(),
        ["x", "y", "z"]
    );
    assert_eq!(
        Expander::default().expand("${A// /_}", &env).unwrap(),
        "x_y"
    );
}

#[test]
fn spans_across_continuations_stay_on_char_boundaries() {
    let text = "FROM a\nENV é\\\né=1 ké=\\\nvé\nLABEL ü\\\n=x\n";
    let tree = parse_syntax(text).unwrap();
    for node in &tree.nodes {
        for w in &node.args {
            assert!(text.is_char_boundary(w.span.start) && text.is_char_boundary(w.span.end));
            assert!(w.span.end <= text.len());
        }
    }
    let env = &tree.nodes[1];
    assert_eq!(env.args[0].value, "éé");
    assert_eq!((env.args[0].span.line, env.args[0].span.end_line), (2, 3));
    assert_eq!(&text[env.args[4].span.range()], "vé");
}
