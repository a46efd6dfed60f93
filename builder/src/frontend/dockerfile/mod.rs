//! The Dockerfile frontend: parser, instructions, word expansion and stages.
