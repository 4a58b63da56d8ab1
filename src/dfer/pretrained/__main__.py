import sys

from dfer.pretrained.export import main

sys.exit(main())
