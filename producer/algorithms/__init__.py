"""What an algorithm is to the platform: its declaration, the built-ins, the catalog.

A plugin declares its algorithm with the names exported here (`from producer.algorithms
import Algorithm, Operation, Option, Resources`); workers build their tasks from the
catalog (`producer.algorithms.catalog`). Nothing in this package loads the Client.

- `declare`: the declaration vocabulary and its checks;
- `builtins`: the platform's own algorithms, declared the same way;
- `catalog`: the built-ins and the installed plugins, found through entry points;
- `options`: option values from text (HTTP, command line) typed by a declaration;
- `arrays`: numeric arrays on the wire.
"""

from producer.algorithms.declare import Algorithm, AlgorithmError, Operation, Option, Resources

__all__ = ["Algorithm", "AlgorithmError", "Operation", "Option", "Resources"]
