// Command-line options of pld-bert: one table of (name, default, help) per subcommand, values
// from a JSON config file (--config FILE, keys are option names) overridden by --name VALUE (or
// --name=VALUE) flags, and typed getters that reject nonsense with one clear message.
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pld/core/error.hpp"

namespace bert {

struct OptionSpec {
  std::string name;
  std::string default_value;
  std::string help;
  bool flag = false;  // boolean: "--name" alone means true
};

class Options {
 public:
  Options(std::string command, std::vector<OptionSpec> specs) : command_(std::move(command)), specs_(std::move(specs)) {
    for (const auto& s : specs_) values_[s.name] = s.default_value;
  }

  // Parses args (after the subcommand). A --config FILE is read first, wherever it appears.
  void parse(const std::vector<std::string>& args) {
    for (std::size_t i = 0; i < args.size(); ++i)
      if (args[i] == "--config" || args[i].rfind("--config=", 0) == 0) {
        const std::string file = args[i] == "--config" ? (i + 1 < args.size() ? args[i + 1] : "") : args[i].substr(9);
        if (file.empty()) pld::detail::throw_error("--config needs a file name");
        load_json(file);
      }
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (a == "--help" || a == "-h") {
        help_ = true;
        continue;
      }
      if (a.rfind("--", 0) != 0) pld::detail::throw_error("unexpected argument '", a, "' (options start with --; see --help)");
      std::string name = a.substr(2), value;
      const auto eq = name.find('=');
      const bool has_value = eq != std::string::npos;
      if (has_value) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      const OptionSpec& s = spec(name);
      if (!has_value) {
        if (s.flag && (i + 1 >= args.size() || (args[i + 1] != "true" && args[i + 1] != "false"))) {
          value = "true";
        } else {
          if (i + 1 >= args.size()) pld::detail::throw_error("--", name, " needs a value");
          value = args[++i];
        }
      }
      if (name != "config") values_[name] = value;
    }
  }

  bool help_requested() const { return help_; }

  std::string help() const {
    std::ostringstream o;
    o << "usage: pld-bert " << command_ << " [--config FILE.json] [--option value ...]\n\noptions (JSON config keys are the same names):\n";
    for (const auto& s : specs_) {
      o << "  --" << s.name << (s.flag ? "" : " VALUE");
      o << "\n      " << s.help;
      if (!s.default_value.empty()) o << " [default: " << s.default_value << "]";
      o << "\n";
    }
    return o.str();
  }

  std::string str(const std::string& name) const { return values_.at(spec(name).name); }

  std::string choice(const std::string& name, const std::vector<std::string>& allowed) const {
    const std::string v = str(name);
    for (const auto& a : allowed)
      if (v == a) return v;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    pld::detail::throw_error("--", name, " must be one of ", list, "; got '", v, "'");
  }

  std::int64_t integer(const std::string& name, std::int64_t lo, std::int64_t hi) const {
    const std::string v = str(name);
    errno = 0;
    char* end = nullptr;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0') pld::detail::throw_error("--", name, " must be an integer; got '", v, "'");
    if (errno == ERANGE) pld::detail::throw_error("--", name, " must be in ", lo, "..", hi, "; got ", v);
    if (x < lo || x > hi) pld::detail::throw_error("--", name, " must be in ", lo, "..", hi, "; got ", x);
    return x;
  }

  double real(const std::string& name, double lo, double hi) const {
    const std::string v = str(name);
    errno = 0;
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(x))
      pld::detail::throw_error("--", name, " must be a number; got '", v, "'");
    if (x < lo || x > hi) pld::detail::throw_error("--", name, " must be in [", lo, ", ", hi, "]; got ", x);
    return x;
  }

  bool boolean(const std::string& name) const {
    const std::string v = str(name);
    if (v == "true" || v == "1") return true;
    if (v == "false" || v == "0") return false;
    pld::detail::throw_error("--", name, " must be true or false; got '", v, "'");
  }

  // The effective values, as JSON (written next to the run's outputs).
  nlohmann::json to_json() const {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& s : specs_)
      if (s.name != "config") j[s.name] = values_.at(s.name);
    return j;
  }

  void set(const std::string& name, const std::string& value) { values_[spec(name).name] = value; }

 private:
  const OptionSpec& spec(const std::string& name) const {
    for (const auto& s : specs_)
      if (s.name == name) return s;
    pld::detail::throw_error("unknown option --", name, " for 'pld-bert ", command_, "' (see --help)");
  }

  void load_json(const std::string& file) {
    std::error_code ec;
    if (std::filesystem::is_directory(file, ec)) pld::detail::throw_error("config file ", file, " is a directory");
    std::ifstream in(file, std::ios::binary);
    if (!in) pld::detail::throw_error("cannot read config file ", file);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    load_json_text(text, file);
  }

 public:
  // The config's values from JSON text (`what` names it in errors): one flat object of option
  // names; a key given twice is an error (JSON parsers keep the last one without a word).
  void load_json_text(const std::string& text, const std::string& what) {
    const std::string& file = what;
    nlohmann::json j;
    std::string duplicate;
    try {
      std::vector<std::set<std::string>> keys;  // the keys seen in each open object
      j = nlohmann::json::parse(text, [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        (void)depth;
        if (event == nlohmann::json::parse_event_t::object_start) keys.emplace_back();
        else if (event == nlohmann::json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
        else if (event == nlohmann::json::parse_event_t::key && !keys.empty() && !keys.back().insert(parsed.get<std::string>()).second &&
                 duplicate.empty())
          duplicate = parsed.get<std::string>();
        return true;
      });
    } catch (const std::exception& e) {
      pld::detail::throw_error("config file ", file, " is not valid JSON: ", e.what());
    }
    if (!duplicate.empty()) pld::detail::throw_error("config file ", file, " gives '", duplicate, "' more than once");
    if (!j.is_object()) pld::detail::throw_error("config file ", file, " must hold one JSON object");
    for (const auto& [k, v] : j.items()) {
      spec(k);
      if (k == "config") pld::detail::throw_error("config file ", file, " may not name another config");
      if (v.is_string()) values_[k] = v.get<std::string>();
      else if (v.is_boolean()) values_[k] = v.get<bool>() ? "true" : "false";
      else if (v.is_number_unsigned()) values_[k] = std::to_string(v.get<unsigned long long>());
      else if (v.is_number_integer()) values_[k] = std::to_string(v.get<long long>());
      else if (v.is_number()) {
        std::ostringstream o;
        o.precision(17);
        o << v.get<double>();
        values_[k] = o.str();
      } else pld::detail::throw_error("config file ", file, ": value of '", k, "' must be a string, number or boolean");
    }
  }

 private:

  std::string command_;
  std::vector<OptionSpec> specs_;
  std::map<std::string, std::string> values_;
  bool help_ = false;
};

}  // namespace bert
