from runners.bench.run import main

main()
