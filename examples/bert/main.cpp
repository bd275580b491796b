// pld-bert: BERT pretraining with progressive layer dropping on the CPU (or, built with CUDA, a GPU).
//   pld-bert pretrain [options]   MLM pretraining (see pld-bert pretrain --help)
//   pld-bert finetune [options]   genre classification or POS tagging from a checkpoint
//   pld-bert vocab [options]      train the WordPiece vocabulary only
//   pld-bert tokenize --vocab F TEXT...   show the WordPiece encoding of TEXT
// Errors are one line on stderr and exit status 1 (2 for a bad command line).
#include <exception>
#if defined(__SSE__) || defined(__x86_64__)
#include <pmmintrin.h>
#include <xmmintrin.h>
#endif
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "finetune.hpp"
#include "pretrain.hpp"
#if defined(PLD_BERT_MPI)
#include "pld/dist/mpi.hpp"
#endif

namespace {

const char* kUsage =
    "usage: pld-bert <command> [options]\n"
    "commands:\n"
    "  pretrain   masked-language-model pretraining with progressive layer dropping\n"
    "  finetune   genre classification or POS tagging from a pretraining checkpoint\n"
    "  vocab      train a WordPiece vocabulary on the corpus's training split\n"
    "  tokenize   encode text with a vocab.txt (--vocab FILE TEXT...)\n"
    "'pld-bert <command> --help' lists the command's options.\n";

int run_vocab(const std::vector<std::string>& args, std::ostream& out) {
  bert::Options o("vocab", {{"corpus", bert::default_corpus_dir(), "Brown corpus directory or a plain-text file"},
                           {"out", "runs/bert", "directory for vocab.txt"},
                           {"vocab-size", "8192", "WordPiece vocabulary size"}});
  o.parse(args);
  if (o.help_requested()) {
    out << "Trains a WordPiece vocabulary on the training split and writes <out>/vocab.txt.\n\n" << o.help();
    return 0;
  }
  const int size = static_cast<int>(o.integer("vocab-size", bert::kNumSpecial + 1, 1 << 20));
  const std::string path = o.str("out") + "/vocab.txt";
  if (std::filesystem::exists(path)) pld::detail::throw_error(path, " exists (nothing was overwritten)");
  const bert::Data d = bert::load_data(o.str("corpus"), "", o.str("out"), size, out);
  std::filesystem::create_directories(o.str("out"));
  d.vocab.save(path);
  out << "vocabulary saved to " << path << "\n";
  return 0;
}

int run_tokenize(const std::vector<std::string>& args, std::ostream& out) {
  std::string vocab;
  std::string text;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--vocab" && i + 1 < args.size()) vocab = args[++i];
    else text += (text.empty() ? "" : " ") + args[i];
  }
  if (vocab.empty()) pld::detail::throw_error("tokenize needs --vocab FILE");
  const bert::Vocab v = bert::Vocab::load(vocab);
  const std::vector<int> ids = v.encode(text);
  for (int id : ids) out << v.token(id) << ' ';
  out << "\n";
  for (int id : ids) out << id << ' ';
  out << "\n";
  return 0;
}

}  // namespace

// Denormal floats (|x| < 1.2e-38) cost ~100x on x86; late in training some gradients and
// moments reach them. Flush them to zero, in every OpenMP thread, as training frameworks do.
void flush_denormals() {
#if defined(__SSE__) || defined(__x86_64__)
#pragma omp parallel
  {
    _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
    _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
  }
  _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
  _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
#endif
}

// Whether an MPI launcher (mpirun, srun) started this process: then pretraining runs data
// parallel over MPI_COMM_WORLD. A plain start never initialises MPI.
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

int main(int argc, char** argv) {
  if (!std::getenv("PLD_KEEP_DENORMALS")) flush_denormals();
#if defined(PLD_BERT_MPI)
  std::optional<pld::dist::MpiSession> mpi;
  std::optional<pld::dist::MpiCommunicator> comm;
  if (launched_by_mpi()) {
    mpi.emplace(&argc, &argv);
    comm.emplace();
  }
  pld::dist::Communicator* ranks = comm ? &*comm : nullptr;
  // An error on one rank ends the whole job at once (the others may wait in an all-reduce).
  auto fail = [&](int code) {
    if (comm && comm->size() > 1) {
      std::cout.flush();
      std::cerr.flush();
      MPI_Abort(MPI_COMM_WORLD, code);
    }
    return code;
  };
#else
  pld::dist::Communicator* ranks = nullptr;
  auto fail = [](int code) { return code; };
#endif
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  if (ranks && ranks->size() > 1 && cmd != "pretrain") {
    if (ranks->rank() == 0) std::cerr << "pld-bert: error: only 'pretrain' runs data parallel; run '" << cmd << "' without mpirun\n";
    return fail(2);
  }
  try {
#if defined(PLD_BERT_CUDA)
    const bert::TrainerFactory cuda = bert::make_cuda_trainer;
#else
    const bert::TrainerFactory cuda;
#endif
    if (cmd == "pretrain") return bert::run_pretrain(args, std::cout, ranks, cuda);
    if (cmd == "finetune") return bert::run_finetune(args, std::cout);
    if (cmd == "vocab") return run_vocab(args, std::cout);
    if (cmd == "tokenize") return run_tokenize(args, std::cout);
    std::cerr << "pld-bert: unknown command '" << cmd << "'\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "pld-bert: error: " << e.what() << "\n";
    return fail(1);
  }
}
