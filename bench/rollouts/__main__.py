from bench.rollouts.run import main

raise SystemExit(main())
