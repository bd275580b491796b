// The Controller's saved state as a small versioned text: its schedule, gate configuration, mode
// and statistics, one `key value...` line each, closed by an FNV-1a checksum of everything above
// it. Doubles are written with 17 significant digits so they read back bit for bit.
#pragma once

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "pld/core/error.hpp"
#include "pld/gate/gate.hpp"
#include "pld/hooks/stats.hpp"
#include "pld/schedule/schedule.hpp"

namespace pld {

struct ControllerState {
  Schedule schedule{TemporalSchedule(), DepthSchedule::uniform(), 1};
  GateConfig gate;
  bool training = true;
  ControllerStats stats;
};

namespace detail {

constexpr const char* kStateMagic = "pld-controller-state";
constexpr int kStateVersion = 1;

inline std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

inline std::string format_double(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

inline double parse_state_double(const std::string& key, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE)
    detail::throw_error("controller state: '", key, "' has a malformed number '", text, "'");
  return v;
}

inline std::int64_t parse_state_int(const std::string& key, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE)
    detail::throw_error("controller state: '", key, "' has a malformed integer '", text, "'");
  return static_cast<std::int64_t>(v);
}

}  // namespace detail

inline std::string serialize_state(const ControllerState& st) {
  const Schedule& s = st.schedule;
  const TemporalSchedule& t = s.temporal();
  const ControllerStats& x = st.stats;
  using detail::format_double;
  std::ostringstream os;
  os << detail::kStateMagic << ' ' << detail::kStateVersion << '\n';
  os << "layers " << s.num_layers() << '\n';
  os << "temporal " << to_string(t.kind()) << ' ' << format_double(t.theta_bar()) << ' '
     << format_double(t.gamma()) << ' ' << t.steps() << ' ' << t.delay() << '\n';
  os << "depth " << to_string(s.depth().kind());
  for (double w : s.depth().profile_weights()) os << ' ' << format_double(w);
  os << '\n';
  os << "gate " << st.gate.seed << ' ' << to_string(st.gate.sampling) << ' '
     << to_string(st.gate.scaling) << ' ' << to_string(st.gate.granularity) << '\n';
  os << "training " << (st.training ? 1 : 0) << '\n';
  os << "step " << x.step << ' ' << format_double(x.theta) << ' ' << x.layers_kept << ' '
     << format_double(x.expected_kept_fraction) << ' ' << format_double(x.realised_kept_fraction)
     << '\n';
  os << "totals " << x.steps_done << ' ' << format_double(x.expected_work) << ' '
     << format_double(x.realised_work) << ' ' << x.tokens << ' ' << format_double(x.seconds) << ' '
     << format_double(x.last_loss) << '\n';
  const std::string body = os.str();
  char sum[32];
  std::snprintf(sum, sizeof sum, "%016" PRIx64, detail::fnv1a64(body));
  return body + "checksum " + sum + '\n';
}

inline ControllerState parse_state(std::string_view text) {
  using detail::throw_error;
  // Split off and verify the checksum line first: a truncated or edited state fails here.
  const std::size_t pos = text.rfind("checksum ");
  if (pos == std::string_view::npos || (pos > 0 && text[pos - 1] != '\n'))
    throw_error("controller state: no checksum line (truncated or not a pld state)");
  const std::string_view body = text.substr(0, pos);
  std::string given(text.substr(pos + 9));
  while (!given.empty() && (given.back() == '\n' || given.back() == '\r')) given.pop_back();
  char expect[32];
  std::snprintf(expect, sizeof expect, "%016" PRIx64, detail::fnv1a64(body));
  if (given != expect)
    throw_error("controller state: checksum mismatch (stored ", given, ", computed ", expect,
                "): the state is corrupt");

  std::map<std::string, std::vector<std::string>> fields;
  std::istringstream in{std::string(body)};
  std::string line;
  bool first = true;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string key, word;
    ls >> key;
    std::vector<std::string> words;
    while (ls >> word) words.push_back(word);
    if (first) {
      if (key != detail::kStateMagic || words.size() != 1)
        throw_error("controller state: does not start with '", detail::kStateMagic, "'");
      if (words[0] != std::to_string(detail::kStateVersion))
        throw_error("controller state: version ", words[0], " is not supported (this build reads ",
                    detail::kStateVersion, ")");
      first = false;
      continue;
    }
    if (key.empty()) continue;
    if (!fields.emplace(key, words).second) throw_error("controller state: duplicate key '", key, "'");
  }
  if (first) throw_error("controller state: empty");
  auto get = [&](const char* key, std::size_t min_words, std::size_t max_words) {
    auto it = fields.find(key);
    if (it == fields.end()) throw_error("controller state: missing '", key, "'");
    if (it->second.size() < min_words || it->second.size() > max_words)
      throw_error("controller state: '", key, "' has ", it->second.size(), " values, expected ",
                  min_words == max_words ? std::to_string(min_words)
                                         : std::to_string(min_words) + ".." + std::to_string(max_words));
    return it->second;
  };
  for (const auto& kv : fields) {
    static const char* known[] = {"layers", "temporal", "depth", "gate", "training", "step", "totals"};
    bool ok = false;
    for (const char* k : known) ok = ok || kv.first == k;
    if (!ok) throw_error("controller state: unknown key '", kv.first, "'");
  }
  using detail::parse_state_double;
  using detail::parse_state_int;

  const std::int64_t layers64 = parse_state_int("layers", get("layers", 1, 1)[0]);
  if (layers64 < 1 || layers64 > Schedule::kMaxLayers)
    throw_error("controller state: 'layers' must be in [1, ", Schedule::kMaxLayers, "], got ", layers64);
  const auto layers = static_cast<int>(layers64);
  const auto tw = get("temporal", 5, 5);
  const TemporalKind tk = parse_temporal_kind(tw[0]);
  const double theta_bar = parse_state_double("temporal", tw[1]);
  const double gamma = parse_state_double("temporal", tw[2]);
  const std::int64_t tsteps = parse_state_int("temporal", tw[3]);
  const std::int64_t delay = parse_state_int("temporal", tw[4]);
  TemporalSchedule temporal;
  switch (tk) {
    case TemporalKind::constant: temporal = TemporalSchedule::constant(theta_bar, delay); break;
    case TemporalKind::exponential: temporal = TemporalSchedule::exponential(theta_bar, gamma, delay); break;
    case TemporalKind::linear: temporal = TemporalSchedule::linear(theta_bar, tsteps, delay); break;
    case TemporalKind::cosine: temporal = TemporalSchedule::cosine(theta_bar, tsteps, delay); break;
  }
  const auto dw = get("depth", 1, 1 + DepthSchedule::kMaxProfileLayers);
  DepthSchedule depth;
  switch (parse_depth_kind(dw[0])) {
    case DepthKind::uniform: depth = DepthSchedule::uniform(); break;
    case DepthKind::linear: depth = DepthSchedule::linear(); break;
    case DepthKind::profile: {
      std::vector<double> w;
      for (std::size_t i = 1; i < dw.size(); ++i) w.push_back(parse_state_double("depth", dw[i]));
      depth = DepthSchedule::profile(w);
      break;
    }
  }
  ControllerState st;
  st.schedule = Schedule(temporal, depth, layers);

  const auto gw = get("gate", 4, 4);
  errno = 0;
  char* end = nullptr;
  st.gate.seed = std::strtoull(gw[0].c_str(), &end, 10);
  if (gw[0].empty() || gw[0][0] == '-' || end != gw[0].c_str() + gw[0].size() || errno == ERANGE)
    throw_error("controller state: 'gate' has a malformed seed '", gw[0], "'");
  st.gate.sampling = parse_sampling(gw[1]);
  st.gate.scaling = parse_scaling(gw[2]);
  st.gate.granularity = parse_granularity(gw[3]);

  const std::int64_t training = parse_state_int("training", get("training", 1, 1)[0]);
  if (training != 0 && training != 1) throw_error("controller state: 'training' must be 0 or 1");
  st.training = training == 1;

  const auto sw = get("step", 5, 5);
  ControllerStats& x = st.stats;
  x.num_layers = layers;
  x.step = parse_state_int("step", sw[0]);
  x.theta = parse_state_double("step", sw[1]);
  x.layers_kept = static_cast<int>(parse_state_int("step", sw[2]));
  x.expected_kept_fraction = parse_state_double("step", sw[3]);
  x.realised_kept_fraction = parse_state_double("step", sw[4]);
  const auto tt = get("totals", 6, 6);
  x.steps_done = parse_state_int("totals", tt[0]);
  x.expected_work = parse_state_double("totals", tt[1]);
  x.realised_work = parse_state_double("totals", tt[2]);
  x.tokens = parse_state_int("totals", tt[3]);
  x.seconds = parse_state_double("totals", tt[4]);
  x.last_loss = parse_state_double("totals", tt[5]);
  if (x.step < -1 || x.steps_done < 0 || x.tokens < 0 || x.layers_kept < 0 || x.layers_kept > layers)
    throw_error("controller state: statistics out of range");
  return st;
}

}  // namespace pld
