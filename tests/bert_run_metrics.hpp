// Shared by the tests that compare two pld-bert runs through their metrics.jsonl (the emulated
// GPU loop against the CPU's, 2 ranks against one process): the records, and the step-by-step
// comparison. Catch2 assertions: include from test files only.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bert_test {

struct Metrics {
  std::vector<nlohmann::json> train, validation;
};
inline Metrics read_metrics(const std::string& dir) {
  Metrics m;
  std::ifstream in(dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    (j.at("split") == "train" ? m.train : m.validation).push_back(j);
  }
  return m;
}
inline double rel(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

// Two runs' records step by step: the same steps and plans, losses and norms within the bounds.
// Returns the worst relative loss difference.
inline double compare_runs(const Metrics& got, const Metrics& want, double loss_tol, double norm_tol) {
  REQUIRE(got.train.size() == want.train.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < want.train.size(); ++i) {
    const auto &g = got.train[i], &w = want.train[i];
    INFO("step " << w.at("step"));
    CHECK(g.at("step") == w.at("step"));
    CHECK(g.at("layers") == w.at("layers"));
    const double dl = rel(g.at("loss").get<double>(), w.at("loss").get<double>());
    CHECK(dl <= loss_tol);
    CHECK(rel(g.at("grad_norm").get<double>(), w.at("grad_norm").get<double>()) <= norm_tol);
    worst = std::max(worst, dl);
  }
  REQUIRE(got.validation.size() == want.validation.size());
  for (std::size_t i = 0; i < want.validation.size(); ++i) {
    INFO("evaluation at step " << want.validation[i].at("step"));
    CHECK(got.validation[i].at("masked_tokens") == want.validation[i].at("masked_tokens"));
    CHECK(rel(got.validation[i].at("mlm_loss").get<double>(), want.validation[i].at("mlm_loss").get<double>()) <= loss_tol);
  }
  return worst;
}

}  // namespace bert_test
