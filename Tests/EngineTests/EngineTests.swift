// Tests of the built-in engine live beside this file, one file per part.
import Engine
