#!/usr/bin/perl
# Runs one of ldirectord's own check functions, unchanged, and prints its verdict.
#
#   perl ldirectord.pl SERVICE server=IP port=N [login=… passwd=… request=… receive=…
#                      database=… secret=… protocol=tcp|udp checktimeout=N negotiatetimeout=N]
#
# The subs are read from /usr/sbin/ldirectord (the installed package) and compiled here;
# service_set, which would program IPVS, only records the verdict. Prints "up" or "down" last.
use strict;
use warnings;
no warnings qw(redefine once);

my $source_file = '/usr/sbin/ldirectord';
open(my $fh, '<', $source_file) or die "$source_file: $!";
my $source = do { local $/; <$fh> };
close $fh;

our ($DEBUG, $SERVICE_UP, $SERVICE_DOWN, $HOSTNAME) = (0, 0, 1, 'localhost');
our $verdict;

# ldirectord's top-level imports (Socket, Socket6, POSIX …), then every top-level sub, as
# written there.
my $subs = '';
while ($source =~ /^(use (?!strict|vars)[^\n]*;)$/mg) {
	$subs .= "$1\n";
}
while ($source =~ /^(sub \w+\s*\n\{.*?\n\})/msg) {
	$subs .= "$1\n";
}
{
	no strict;
	eval "package main; $subs; 1" or die "compiling ldirectord's subs: $@";
}

# Assigned at run time, after ldirectord's own definitions above were compiled.
*main::service_set = sub { my ($v, $r, $state) = @_; $verdict = $state; };
*main::ld_debug = sub { print STDERR "debug: $_[1]\n" if $ENV{LDIRECTORD_DEBUG}; };
*main::ld_log = sub { print STDERR "log: $_[0]"; };

my $service = shift @ARGV or die "usage: $0 SERVICE key=value…\n";
my %arg = map { /^([^=]+)=(.*)$/s ? ($1, $2) : die "bad argument $_\n" } @ARGV;
my $v = {
	service          => $service,
	protocol         => $arg{protocol} // 'tcp',
	checkport        => $arg{port},
	login            => $arg{login} // '',
	passwd           => $arg{passwd} // '',
	database         => $arg{database} // '',
	secret           => $arg{secret} // '',
	checktimeout     => $arg{checktimeout} // 5,
	negotiatetimeout => $arg{negotiatetimeout} // 5,
	server           => $arg{server},
};
my $r = {
	server  => $arg{server},
	port    => $arg{port},
	request => '/' . ($arg{request} // ''),
	receive => $arg{receive} // '',
};

my %check = (
	ftp => sub { check_ftp($v, $r) },
	smtp => sub { check_smtp($v, $r) },
	submission => sub { check_smtp($v, $r) },
	pop => sub { check_pop($v, $r, 0) },
	pops => sub { check_pop($v, $r, 1) },
	imap => sub { check_imap($v, $r) },
	imaps => sub { check_imaps($v, $r) },
	nntp => sub { check_nntp($v, $r) },
	ldap => sub { check_ldap($v, $r) },
	ldaps => sub { check_ldap($v, $r) },
	mysql => sub { check_mysql($v, $r) },
	pgsql => sub { check_pgsql($v, $r) },
	sip => sub { check_sip($v, $r) },
	radius => sub { check_radius($v, $r) },
);
my $run = $check{$service} or die "no check for $service\n";
# The real ldirectord runs checks with SIGALRM handlers of its own; a stray alarm must not
# kill this harness before the check's own handler is set.
local $SIG{ALRM} = sub { die "Timeout Alarm" };
eval { $run->(); 1 } or print STDERR "check died: $@";
print defined $verdict ? "$verdict\n" : "none\n";
