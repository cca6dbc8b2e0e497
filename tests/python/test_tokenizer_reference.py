"""test_tokenizer_reference.py: `shardq tokenize` against the Hugging Face `tokenizers` library.

No tokenizer files can be downloaded here, so each family's tokenizer.json is built with
`tokenizers` itself, configured as the real ones are, and trained on WikiText-2 valid.txt
with a small vocab:
  llama2   BPE + byte_fallback, Prepend("▁")+Replace(" ","▁") normalizer, <s>/</s>/<unk>,
           <0xNN> byte tokens at ids 3..258, TemplateProcessing "<s> $A"
  mistral  the same model with a Metaspace(prepend_scheme=first, split=false) pre-tokenizer
  gpt2     ByteLevel pre-tokenizer and decoder, <|endoftext|>
  llama3   Split(Llama-3 regex, Isolated) + ByteLevel(use_regex=false), ignore_merges,
           TemplateProcessing "<|begin_of_text|> $A"
  qwen2    Split(Qwen2 regex) + ByteLevel(use_regex=false), NFC normalizer, chat specials
  unk      llama2 without byte_fallback: unknown chars become <unk> (fuse_unk)
  digits   Digits(individual) + ByteLevel(add_prefix_space=true)
  splits   Split with each behavior (MergedWithPrevious/Next, Contiguous, Removed, inverted)
Each also gets added tokens as real files have them: a normalized non-special one (matched
after normalization, as the reference does), an rstrip one and an lstrip special one.
For each: ids of a few hundred WikiText-2 test lines and hand-picked hard strings (unicode,
whitespace runs, digits, empty, special tokens in text) must equal the reference's, with and
without special tokens; JSONL input likewise (and one 100 kB document); decode must equal
the reference's decode, and for the families whose reference round-trips, decode(encode(x)) == x.
A real tokenizer.json under /work/shared/data, if one appears, is checked the same way.
"""
import json
import os
import pathlib
import subprocess

import pytest

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = pathlib.Path(os.environ.get("SHARDQ_ROOT", pathlib.Path(__file__).resolve().parents[2]))
SHARDQ = ROOT / "shardq"


def data_dir():
    for cand in (pathlib.Path("/work/shared/data"), ROOT / ".." / "shared" / "data"):
        if (cand / "wikitext-2" / "valid.txt").exists():
            return cand
    pytest.skip("WikiText-2 not found under /work/shared/data")


LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

HARD_CASES = [
    "",
    "Hello world",
    "Héllo wörld, café naïve résumé Ångström",
    "日本語のテキストと中文字符",
    "emoji 😀🎉 thumbs 👍🏽 family 👨‍👩‍👧",
    "  leading and   multiple    spaces",
    "trailing spaces   ",
    "tabs\tand\t\tmore\ttabs",
    " ",
    "     ",
    "12345 3.14159 1,000,000 and 2024-11-23 ２０２４ ½",
    "it's they're I'LL we'd You'VE",
    "<s>hello</s> world",
    "text with <unk> inside <unk>",
    "<|begin_of_text|>hi there<|end_of_text|>",
    "<|endoftext|>start and end<|endoftext|>",
    "<|im_start|>user\u00a0hi<|im_end|>",
    "say hello world, hello  world, hello world<mask> and  <mask>x [sep]   y[sep]",
    "hello world",
    "nbsp\u00a0here and ideographic\u3000space",
    "symbols !@#$%^&*()_+-=[]{}|;:',.<>/?`~ \\ \"",
    "a" * 300,
    "😀",
    "Ω≈ç√∫˜µ≤≥÷ ¡™£¢∞§¶•ªº–≠",
    "Зимой холодно. Γειά σου κόσμε. مرحبا",
    "mixedCASE camelCaseWords snake_case_words",
]

JSONL_CASES = [
    "line one\nline two",
    "\n\nblank lines first",
    "crlf\r\nline\r\n",
    "spaces before newline   \n  and after",
    "<s>\n</s>",
    "",
]


def run(args, stdin_text=None):
    proc = subprocess.run([str(SHARDQ), "tokenize", *args], input=stdin_text, capture_output=True,
                          text=True, encoding="utf-8", timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def wikitext_lines(n):
    text = (data_dir() / "wikitext-2" / "test.txt").read_text(encoding="utf-8")
    return text.split("\n")[:n]


def training_lines():
    text = (data_dir() / "wikitext-2" / "valid.txt").read_text(encoding="utf-8")
    return text.split("\n")[:4000]


def byte_tokens_first(tok, specials):
    """Give the vocab Llama's layout: specials, then <0x00>..<0xFF>, then learned tokens."""
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    learned = sorted((i, t) for t, i in vocab.items() if t not in specials)
    new = {t: i for i, t in enumerate(specials)}
    for b in range(256):
        new[f"<0x{b:02X}>"] = len(new)
    for _, t in learned:
        if t not in new:
            new[t] = len(new)
    spec["model"]["vocab"] = new
    for added in spec["added_tokens"]:
        added["id"] = new[added["content"]]
    return spec


def build_llama2(out):
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=120,
                                  show_progress=False)
    tok.train_from_iterator(training_lines(), trainer)
    spec = byte_tokens_first(tok, ["<unk>", "<s>", "</s>"])
    spec["pre_tokenizer"] = None
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.save(str(out))
    (out.parent / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))


def build_mistral(out, llama2_file):
    tok = Tokenizer.from_file(str(llama2_file))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="first"),
                                     decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    tok.save(str(out))


def build_bytelevel(out, pre, specials, post=None, normalizer=None, ignore_merges=False):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_lines(), trainer)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = post
    tok.save(str(out))


def build(family, tmp):
    d = tmp / family
    d.mkdir()
    out = d / "tokenizer.json"
    if family == "llama2":
        build_llama2(out)
    elif family == "mistral":
        build_llama2(tmp / "llama2_base.json")
        build_mistral(out, tmp / "llama2_base.json")
    elif family == "unk":
        build_llama2(tmp / "llama2_unk_base.json")
        spec = json.loads((tmp / "llama2_unk_base.json").read_text())
        spec["model"]["byte_fallback"] = False
        out.write_text(json.dumps(spec))
    elif family == "splits":
        pre = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"[,.]"), behavior="merged_with_previous"),
            pre_tokenizers.Split(" ", behavior="merged_with_next"),
            pre_tokenizers.Split(Regex(r"\p{N}"), behavior="contiguous"),
            pre_tokenizers.Split(Regex(r"[;:@]"), behavior="removed"),
            pre_tokenizers.Split(Regex(r"[^\s]+"), behavior="isolated", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        build_bytelevel(out, pre, ["<|endoftext|>"])
    elif family == "gpt2":
        build_bytelevel(out, pre_tokenizers.ByteLevel(add_prefix_space=False), ["<|endoftext|>"],
                        post=processors.ByteLevel(trim_offsets=False))
        spec = json.loads(out.read_text())  # older files (GPT-2, Llama-2) store merges as "a b" strings
        spec["model"]["merges"] = [" ".join(m) for m in spec["model"]["merges"]]
        out.write_text(json.dumps(spec, ensure_ascii=False))
    elif family == "llama3":
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>"]
        pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
                                       pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        post = processors.Sequence([processors.ByteLevel(trim_offsets=False),
                                    processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                                  special_tokens=[("<|begin_of_text|>", 0)])])
        build_bytelevel(out, pre, specials, post=post, ignore_merges=True)
    elif family == "qwen2":
        pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
                                       pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        build_bytelevel(out, pre, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], normalizer=normalizers.NFC())
    elif family == "digits":
        pre = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                       pre_tokenizers.ByteLevel(add_prefix_space=True)])
        build_bytelevel(out, pre, ["<|endoftext|>"])
    tok = Tokenizer.from_file(str(out))
    tok.add_tokens([AddedToken("hello world", normalized=True), AddedToken("[sep]", rstrip=True, normalized=False)])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    tok.save(str(out))
    return out


FAMILIES = ["llama2", "mistral", "unk", "gpt2", "llama3", "qwen2", "digits", "splits"]
# Families whose reference decode gives back any text free of special-token strings.
ROUND_TRIP_FAMILIES = {"llama2", "gpt2", "llama3", "qwen2"}
SPECIAL_STRINGS = ["<s>", "</s>", "<unk>", "<|", "<mask>", "[sep]"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("tokenizers")


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, workdir):
    return request.param, build(request.param, workdir)


def check_lines(path, texts, add_special):
    ref = Tokenizer.from_file(str(path))
    args = ["--tokenizer", str(path)] + ([] if add_special else ["--no-special"])
    got = run(args, "".join(t + "\n" for t in texts)).split("\n")[:-1]
    assert len(got) == len(texts)
    mismatches = []
    for text, line in zip(texts, got):
        want = ref.encode(text, add_special_tokens=add_special).ids
        ids = [int(x) for x in line.split()]
        if ids != want:
            mismatches.append((text[:80], ids[:20], want[:20]))
    assert not mismatches, f"{len(mismatches)}/{len(texts)} differ, first: {mismatches[:3]}"


def test_wikitext_lines_match_reference(family):
    name, path = family
    check_lines(path, wikitext_lines(300), add_special=True)


def test_hard_cases_match_reference(family):
    name, path = family
    check_lines(path, HARD_CASES, add_special=True)
    check_lines(path, HARD_CASES, add_special=False)


def test_jsonl_records_match_reference(family, tmp_path):
    name, path = family
    ref = Tokenizer.from_file(str(path))
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(JSONL_CASES)))
    got = run(["--tokenizer", str(path.parent), "--input", str(src), "--jsonl", "--field", "body"]).split("\n")[:-1]
    want = [" ".join(map(str, ref.encode(t).ids)) for t in JSONL_CASES]
    assert got == want


def test_whole_document_matches_reference(family, tmp_path):
    """A 100 kB JSONL document: for Llama-2 style (no pre-tokenizer) it is a single BPE word."""
    name, path = family
    ref = Tokenizer.from_file(str(path))
    doc = "\n".join(wikitext_lines(1200))[:100_000]
    src = tmp_path / "doc.jsonl"
    src.write_text(json.dumps({"text": doc}) + "\n")
    got = run(["--tokenizer", str(path), "--input", str(src), "--jsonl"]).split()
    assert [int(x) for x in got] == ref.encode(doc).ids


def test_long_runs_match_reference(family, tmp_path):
    """Long whitespace runs, one huge word and long newline/punctuation runs (regex and merge-loop stress)."""
    name, path = family
    ref = Tokenizer.from_file(str(path))
    texts = [" " * 50_000 + "x", "ab" * 25_000, "\n \n" * 10_000 + "!?" * 10_000, "9" * 30_000]
    src = tmp_path / "long.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    got = run(["--tokenizer", str(path), "--input", str(src), "--jsonl"]).split("\n")[:-1]
    assert got == [" ".join(map(str, ref.encode(t).ids)) for t in texts]


def test_decode_matches_reference(family):
    name, path = family
    ref = Tokenizer.from_file(str(path))
    texts = [t for t in HARD_CASES + wikitext_lines(60) if t]
    ids = [ref.encode(t).ids for t in texts]
    got = run(["--tokenizer", str(path), "--decode"], "".join(" ".join(map(str, i)) + "\n" for i in ids))
    got = got.split("\n")[:-1]
    want = [ref.decode(i) for i in ids]
    assert got == want
    if name in ROUND_TRIP_FAMILIES:
        plain = [(g, t) for g, t in zip(got, texts) if not any(sp in t for sp in SPECIAL_STRINGS)]
        assert all(g == t for g, t in plain), "decode(encode(x)) != x"


def test_bos_eos_from_template_and_config(workdir):
    path = workdir / "llama2" / "tokenizer.json"
    if not path.exists():
        build("llama2", workdir)
    assert run(["--tokenizer", str(path)], "\n") == "1\n"
    assert run(["--tokenizer", str(path), "--no-special"], "\n") == "\n"
    cfg = workdir / "llama2" / "tokenizer_config.json"
    cfg.write_text(json.dumps({"bos_token": "<s>", "eos_token": {"content": "</s>"}, "add_bos_token": True,
                               "add_eos_token": True}))
    ref = Tokenizer.from_file(str(path))
    text = "Hello world"
    want = [1] + ref.encode(text, add_special_tokens=False).ids + [2]
    assert run(["--tokenizer", str(path.parent)], text + "\n").split() == [str(i) for i in want]
    cfg.write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))


def real_tokenizers():
    root = pathlib.Path("/work/shared/data")
    return sorted(root.glob("**/tokenizer.json")) if root.exists() else []


@pytest.mark.parametrize("path", real_tokenizers() or [None])
def test_real_tokenizer_matches_reference(path):
    if path is None:
        pytest.skip("no real tokenizer.json under /work/shared/data yet")
    check_lines(path, wikitext_lines(200) + HARD_CASES, add_special=True)


def test_tiny_model_fixture_tokenizer(tmp_path):
    """The tokenizer.json that tests/tools/make_tiny_model writes (byte-level, 6 merges) loads and agrees."""
    tool = ROOT / "build" / "tools" / "make_tiny_model"
    if not tool.exists():
        pytest.skip("build/tools/make_tiny_model not built")
    model = tmp_path / "tiny"
    subprocess.run([str(tool), str(model)], check=True, capture_output=True, timeout=120)
    check_lines(model / "tokenizer.json", wikitext_lines(50) + HARD_CASES, add_special=True)
    assert run(["--tokenizer", str(model)], "the\n").split()[0] == "1"


def test_errors_name_file_and_path(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text(json.dumps({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
                                         "merges": ["a b", "a"]}}))
    proc = subprocess.run([str(SHARDQ), "tokenize", "--tokenizer", str(bad)], input="x\n", capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert "tokenizer.json: model.merges[1]: not a pair" in proc.stderr


@pytest.mark.parametrize("mode", [[], ["--decode"]])
def test_output_that_cannot_be_written_is_an_error(family, mode):
    # /dev/full refuses every write: the ids (or the decoded text) never arrive, so the run must fail.
    name, path = family
    with open("/dev/full", "w") as full:
        proc = subprocess.run([str(SHARDQ), "tokenize", "--tokenizer", str(path), *mode], input="1 2 3\n" * 5000,
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 1 and "writing to stdout failed" in proc.stderr
