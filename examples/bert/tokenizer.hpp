// BERT-style tokenization: basic tokenization (clean, lower-case, strip accents, split on
// whitespace and punctuation), a WordPiece vocabulary trained on the training documents, saved and
// loaded as a vocab.txt that HuggingFace's BertTokenizer reads (one token per line, id = line), and
// greedy longest-match-first encoding with "##" marking a piece that continues a word.
//
// Training follows the usual WordPiece-by-merging recipe (as HuggingFace's WordPieceTrainer):
// start from the characters (word-initial as is, the rest as "##c"), then repeatedly merge the most
// frequent adjacent pair of symbols over the word counts, until the vocabulary has the asked size.
// Ties go to the pair whose merged string sorts first, so training is deterministic.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <map>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "pld/core/error.hpp"
#include "pld/hooks/state.hpp"  // detail::fnv1a64

namespace bert {

inline const std::vector<std::string>& special_tokens() {
  static const std::vector<std::string> s = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  return s;
}
enum SpecialId : int { kPad = 0, kUnk = 1, kCls = 2, kSep = 3, kMask = 4, kNumSpecial = 5 };

namespace detail {

// Decodes one UTF-8 code point at s[i], advancing i; invalid bytes decode as U+FFFD.
inline char32_t next_code_point(const std::string& s, std::size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len == 0 || i + static_cast<std::size_t>(len) > s.size()) {
    ++i;
    return 0xFFFD;
  }
  char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < len; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
    if ((cc >> 6) != 2) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  i += static_cast<std::size_t>(len);
  return cp;
}

inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Lower-case and strip accents for Latin-1 Supplement and Latin Extended-A (what NFD + dropping
// combining marks + lower() does there); combining marks themselves are dropped. Other scripts
// pass through unchanged (no case folding beyond these ranges).
inline char32_t fold(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  // NFD base letters of U+00C0..U+00FF and U+0100..U+017F, lower-cased; '_' = no ASCII base
  // (ae, eth, thorn, sharp s, stroke letters...): kept as the lower-cased code point itself.
  static const char latin1[] = "aaaaaa_ceeeeiiii_nooooo__uuuuy__aaaaaa_ceeeeiiii_nooooo__uuuuy_y";
  static const char latin_ext_a[] =
      "aaaaaaccccccccdd__eeeeeeeeeegggggggghh__iiiiiiiii___jjkk_llllll____nnnnnn___oooooo__rrrrrrsssssssstttt__"
      "uuuuuuuuuuuuwwyyyzzzzzz_";
  static_assert(sizeof(latin1) == 65 && sizeof(latin_ext_a) == 129, "one entry per code point");
  if (c >= 0xC0 && c <= 0xFF) {
    const char b = latin1[c - 0xC0];
    if (b != '_') return static_cast<char32_t>(b);
    return (c >= 0xC0 && c <= 0xDE && c != 0xD7) ? c + 0x20 : c;  // upper -> lower (not x, not sharp s)
  }
  if (c >= 0x100 && c <= 0x17F) {
    const char b = latin_ext_a[c - 0x100];
    return b == '_' ? c : static_cast<char32_t>(b);
  }
  return c;
}

inline bool is_combining(char32_t c) { return c >= 0x300 && c <= 0x36F; }
inline bool is_whitespace(char32_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0xA0 || c == 0x3000 || (c >= 0x2000 && c <= 0x200A); }
inline bool is_control(char32_t c) { return (c < 0x20 && !is_whitespace(c)) || c == 0x7F || c == 0xFFFD || (c >= 0x80 && c < 0xA0); }
// ASCII punctuation and symbols (as BERT treats them), Latin-1 punctuation, general punctuation.
inline bool is_punct(char32_t c) {
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126) ||
         (c >= 0xA1 && c <= 0xBF) || c == 0xD7 || c == 0xF7 || (c >= 0x2010 && c <= 0x205E);
}

}  // namespace detail

// BERT's basic tokenizer: returns the words of `text` after cleaning, lower-casing, accent
// stripping and splitting off every punctuation character as a word of its own.
inline std::vector<std::string> basic_tokenize(const std::string& text) {
  std::vector<std::string> words;
  std::string cur;
  auto flush = [&] {
    if (!cur.empty()) words.push_back(std::move(cur));
    cur.clear();
  };
  for (std::size_t i = 0; i < text.size();) {
    const char32_t c = detail::next_code_point(text, i);
    if (c == 0 || detail::is_control(c) || detail::is_combining(c)) continue;
    if (detail::is_whitespace(c)) {
      flush();
      continue;
    }
    if (detail::is_punct(c)) {
      flush();
      detail::append_utf8(cur, c);
      flush();
      continue;
    }
    detail::append_utf8(cur, detail::fold(c));
  }
  flush();
  return words;
}

class Vocab {
 public:
  Vocab() = default;
  explicit Vocab(std::vector<std::string> tokens) : tokens_(std::move(tokens)) { index(); }

  int size() const { return static_cast<int>(tokens_.size()); }
  const std::string& token(int id) const { return tokens_.at(static_cast<std::size_t>(id)); }
  const std::vector<std::string>& tokens() const { return tokens_; }
  int id(const std::string& t) const {
    const auto it = ids_.find(t);
    return it == ids_.end() ? -1 : it->second;
  }
  // A fingerprint of the token list: checkpoints refuse a vocabulary other than their own.
  std::uint64_t hash() const {
    std::string all;
    for (const auto& t : tokens_) all += t + '\n';
    return pld::detail::fnv1a64(all);
  }

  // Greedy longest-match-first WordPiece of one basic-tokenized word; [UNK] for a word longer
  // than 100 characters or one that cannot be covered.
  void encode_word(const std::string& word, std::vector<int>& out) const {
    if (word.size() > 100) {
      out.push_back(kUnk);
      return;
    }
    const std::size_t before = out.size();
    std::size_t start = 0;
    while (start < word.size()) {
      std::size_t end = word.size();
      int found = -1;
      while (end > start) {
        std::string piece = word.substr(start, end - start);
        if (start > 0) piece = "##" + piece;
        found = id(piece);
        if (found >= 0) break;
        do --end; while (end > start && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80);  // whole code points
      }
      if (found < 0) {
        out.resize(before);
        out.push_back(kUnk);
        return;
      }
      out.push_back(found);
      start = end;
    }
  }

  std::vector<int> encode(const std::string& text) const {
    std::vector<int> ids;
    for (const auto& w : basic_tokenize(text)) encode_word(w, ids);
    return ids;
  }

  std::string decode(const std::vector<int>& ids) const {
    std::string s;
    for (int i : ids) {
      const std::string& t = token(i);
      if (t.rfind("##", 0) == 0) {
        s += t.substr(2);
      } else {
        if (!s.empty()) s += ' ';
        s += t;
      }
    }
    return s;
  }

  void save(const std::string& path) const {
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      for (const auto& t : tokens_) out << t << '\n';
      out.flush();
      if (!out) pld::detail::throw_error("cannot write vocabulary ", tmp);
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) pld::detail::throw_error("cannot rename ", tmp, " to ", path);
  }

  static Vocab load(const std::string& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) pld::detail::throw_error("vocabulary ", path, " is a directory");
    std::ifstream in(path, std::ios::binary);
    if (!in) pld::detail::throw_error("cannot read vocabulary ", path);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return parse(text, path);
  }

  // A vocab.txt's text (`path` names it in errors): one token per line, the special tokens first.
  static Vocab parse(const std::string& text, const std::string& path) {
    std::istringstream in(text);
    std::vector<std::string> tokens;
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      tokens.push_back(line);
    }
    for (int i = 0; i < kNumSpecial; ++i)
      if (static_cast<int>(tokens.size()) <= i || tokens[static_cast<std::size_t>(i)] != special_tokens()[static_cast<std::size_t>(i)])
        pld::detail::throw_error("vocabulary ", path, " is not a pld-bert vocab.txt: line ", i + 1, " must be ",
                                 special_tokens()[static_cast<std::size_t>(i)]);
    Vocab v(std::move(tokens));
    if (v.ids_.size() != v.tokens_.size()) pld::detail::throw_error("vocabulary ", path, " has duplicate tokens");
    return v;
  }

 private:
  void index() {
    ids_.clear();
    for (std::size_t i = 0; i < tokens_.size(); ++i) ids_.emplace(tokens_[i], static_cast<int>(i));
  }
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int> ids_;
};

// Trains a WordPiece vocabulary of at most `vocab_size` tokens from word counts (basic-tokenized
// words). Characters seen fewer than `min_char_count` times are left out (they encode as [UNK]).
inline Vocab train_wordpiece(const std::map<std::string, std::int64_t>& word_counts, int vocab_size, std::int64_t min_char_count = 2) {
  if (vocab_size < kNumSpecial + 1) pld::detail::throw_error("vocabulary size must be > ", kNumSpecial, ", got ", vocab_size);
  if (word_counts.empty()) pld::detail::throw_error("cannot train a vocabulary on an empty corpus");
  std::vector<std::string> tokens = special_tokens();
  std::map<std::string, int> symbol_id;  // symbol string -> id in `symbols`
  std::vector<std::string> symbols;
  auto intern = [&](const std::string& s) {
    const auto it = symbol_id.find(s);
    if (it != symbol_id.end()) return it->second;
    symbols.push_back(s);
    symbol_id.emplace(s, static_cast<int>(symbols.size() - 1));
    return static_cast<int>(symbols.size() - 1);
  };
  // The alphabet: every code point (initial and continuation) seen often enough, in sorted order.
  std::map<std::string, std::int64_t> alphabet;
  std::vector<std::vector<std::string>> word_chars;
  std::vector<std::int64_t> counts;
  for (const auto& [w, n] : word_counts) {
    std::vector<std::string> chars;
    for (std::size_t i = 0; i < w.size();) {
      const std::size_t s = i;
      detail::next_code_point(w, i);
      chars.push_back((s == 0 ? "" : "##") + w.substr(s, i - s));
    }
    for (const auto& c : chars) alphabet[c] += n;
    word_chars.push_back(std::move(chars));
    counts.push_back(n);
  }
  for (const auto& [c, n] : alphabet)
    if (n >= min_char_count && static_cast<int>(tokens.size()) < vocab_size) {
      tokens.push_back(c);
      intern(c);
    }
  // Words as symbol ids; a word with a rare character cannot merge across it and is left as is.
  std::vector<std::vector<int>> words;
  for (std::size_t w = 0; w < word_chars.size(); ++w) {
    std::vector<int> ids;
    bool ok = true;
    for (const auto& c : word_chars[w]) {
      const auto it = symbol_id.find(c);
      if (it == symbol_id.end()) {
        ok = false;
        break;
      }
      ids.push_back(it->second);
    }
    words.push_back(ok ? ids : std::vector<int>{});
  }
  auto key = [](int a, int b) { return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b); };
  std::unordered_map<std::uint64_t, std::int64_t> pair_count;
  std::unordered_map<std::uint64_t, std::vector<int>> pair_words;  // may hold stale entries
  for (std::size_t w = 0; w < words.size(); ++w)
    for (std::size_t i = 0; i + 1 < words[w].size(); ++i) {
      const auto k = key(words[w][i], words[w][i + 1]);
      pair_count[k] += counts[w];
      pair_words[k].push_back(static_cast<int>(w));
    }
  auto merged_string = [&](std::uint64_t k) {
    const std::string& b = symbols[static_cast<std::size_t>(k & 0xFFFFFFFFu)];
    return symbols[static_cast<std::size_t>(k >> 32)] + b.substr(2);  // b is a "##" continuation
  };
  struct Entry {
    std::int64_t count;
    std::string merged;
    std::uint64_t key;
    bool operator<(const Entry& o) const { return count != o.count ? count < o.count : merged > o.merged; }
  };
  std::priority_queue<Entry> heap;
  for (const auto& [k, n] : pair_count) heap.push({n, merged_string(k), k});
  while (static_cast<int>(tokens.size()) < vocab_size && !heap.empty()) {
    const Entry top = heap.top();
    heap.pop();
    const auto it = pair_count.find(top.key);
    if (it == pair_count.end() || it->second != top.count) continue;  // stale
    if (top.count < 2) break;  // nothing left worth merging
    const int a = static_cast<int>(top.key >> 32), b = static_cast<int>(top.key & 0xFFFFFFFFu);
    const bool existed = symbol_id.count(top.merged) != 0;
    const int m = intern(top.merged);
    if (!existed) tokens.push_back(top.merged);
    std::map<std::uint64_t, std::int64_t> changed;
    auto ws = std::move(pair_words[top.key]);
    pair_words.erase(top.key);
    std::sort(ws.begin(), ws.end());
    ws.erase(std::unique(ws.begin(), ws.end()), ws.end());
    for (int w : ws) {
      auto& sym = words[static_cast<std::size_t>(w)];
      const std::int64_t n = counts[static_cast<std::size_t>(w)];
      bool has = false;
      for (std::size_t i = 0; i + 1 < sym.size(); ++i) has = has || (sym[i] == a && sym[i + 1] == b);
      if (!has) continue;
      for (std::size_t i = 0; i + 1 < sym.size(); ++i) changed[key(sym[i], sym[i + 1])] -= n;
      std::vector<int> out;
      for (std::size_t i = 0; i < sym.size();) {
        if (i + 1 < sym.size() && sym[i] == a && sym[i + 1] == b) {
          out.push_back(m);
          i += 2;
        } else {
          out.push_back(sym[i++]);
        }
      }
      sym = std::move(out);
      for (std::size_t i = 0; i + 1 < sym.size(); ++i) {
        const auto k = key(sym[i], sym[i + 1]);
        changed[k] += n;
        pair_words[k].push_back(w);
      }
    }
    for (const auto& [k, d] : changed) {
      if (d == 0) continue;
      auto& c = pair_count[k];
      c += d;
      if (c > 0) heap.push({c, merged_string(k), k}); else pair_count.erase(k);
    }
  }
  return Vocab(std::move(tokens));
}

}  // namespace bert
