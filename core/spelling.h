#pragma once
// Suggestions for misspelled names: the config's unknown keys ("did you mean 'train.lr'?") and the
// command line's unknown subcommands ("did you mean 'train'?") are matched by Levenshtein distance
// (one insertion, deletion or substitution counts 1). Pure functions, thread-safe.

#include <cstddef>
#include <string>
#include <vector>

namespace segrun {

// The Levenshtein distance between a and b.
size_t edit_distance(const std::string& a, const std::string& b);

// The candidate nearest to `word` (the first of equally near ones) when it is close enough to be
// a plausible misspelling: at most 2 edits, or a third of the word's length for longer words.
// "" when no candidate is that close (or there are none).
std::string likely_meant(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace segrun
