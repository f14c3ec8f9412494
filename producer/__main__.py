import sys

from producer.cli.main import main

sys.exit(main())
